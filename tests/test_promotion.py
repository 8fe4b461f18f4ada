"""Promotion: staging objects are verified, copied into the library once and announced once, whoever asks.

Against moto unless a store feature is needed; the reusable POST policy runs on radosgw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import unquote

import httpx
import pytest

from service import devstack
from service.core import keys
from service.lifecycle import promotion, sweeper
from service.lifecycle.sweeper import SweepReport, open_resources, sweep
from service.resources import Resources
from service.settings import load_settings
from service.storage.client import OpenUpload
from tests.conftest import signed_in
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, object_keys, stored_object
from tests.support.settings import MINIMAL_SETTINGS
from tests.support.sweep import run_sweep, sweep_twice
from tests.support.webhooks import Receiver

ALICE = keys.user_id("fake", "alice")
BOB = keys.user_id("fake", "bob")


@pytest.fixture
def env(sweeping_env: dict[str, str]) -> dict[str, str]:
    """The app's settings with the webhook on and no grace period, so a sweep promotes at once."""
    return sweeping_env


@contextlib.asynccontextmanager
async def opened(env: dict[str, str]) -> AsyncIterator[Resources]:
    async with open_resources(load_settings({**env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1"})) as state:
        yield state


def upload_id_of(key: str) -> str:
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None
    return parsed[1]


def confirm(client: httpx.Client, upload_id: str) -> httpx.Response:
    return client.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(client))


def library_keys(s3: devstack.S3Endpoint, bucket: str, upload_id: str | None = None) -> list[str]:
    """Library uploads (not the sidecars beside them)."""
    return [
        k
        for k in object_keys(s3, bucket)
        if keys.parse_library_key("uploads/", k) is not None and (upload_id is None or f"/{upload_id}/" in k)
    ]


def test_html_posted_as_audio_is_never_verified_or_playable_and_the_first_sweep_deletes_it(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Listed only as pending, 409 at playback, then deleted and announced as rejected by one sweep."""
    page = b"<!doctype html><script>alert(1)</script>" * 10
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "song.mp3", page, "audio/mpeg")
        upload_id = upload_id_of(key)
        assert [(u["id"], u["status"]) for u in alice.get("/api/uploads").json()["uploads"]] == [
            (upload_id, "pending")
        ]
        played = alice.get(f"/api/uploads/{upload_id}/url")
        assert played.status_code == 409 and played.json()["error"]["code"] == "upload_pending"
        swept = run_sweep(env)
        assert swept.returncode == 0, swept.stderr
        assert "rejected 1" in swept.stdout
        assert alice.get("/api/uploads").json()["uploads"] == []
        assert alice.get(f"/api/uploads/{upload_id}/url").status_code == 404
    assert [k for k in object_keys(s3, bucket) if upload_id in k] == [keys.decided_key("uploads/", upload_id)]
    [event] = receiver.about(upload_id)
    assert event["type"] == "upload.rejected"
    assert event["data"]["code"] == "not_audio"  # type: ignore[index]


def test_one_sweep_promotes_and_announces_a_never_confirmed_upload_and_the_next_announces_nothing(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """No client call after the upload: the sweep verifies, copies, announces once; a second pass does nothing."""
    data = audio_samples.wav(1.0)
    with signed_in(env) as alice:
        upload_id = upload_id_of(uppy.simple_upload(alice, "memo.wav", data, "audio/wav"))
        first, second = sweep_twice(env)
        assert "promoted 1" in first
        assert "promoted 0" in second and "redelivered 0" in second
        [listed] = alice.get("/api/uploads").json()["uploads"]
        link = alice.get(f"/api/uploads/{upload_id}/url")
    assert (listed["id"], listed["status"]) == (upload_id, "verified")
    assert httpx.get(link.json()["url"]).content == data
    [event] = receiver.about(upload_id)
    assert event["type"] == "upload.confirmed"
    assert event["data"]["key"] == keys.library_key("uploads/", ALICE, upload_id, "memo.wav")  # type: ignore[index]
    [stored] = library_keys(s3, bucket, upload_id)
    assert stored_object(s3, bucket, stored) == (data, "audio/wav")
    head = devstack.s3_admin(s3).head_object(Bucket=bucket, Key=stored)
    assert head["Metadata"]["duration-seconds"] == "1.0"
    assert head["Metadata"]["original-size"] == str(len(data))
    assert not [k for k in object_keys(s3, bucket) if k.startswith("uploads/incoming/")]


def test_a_sweep_leaves_uploads_younger_than_the_grace_period_alone(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """The client's own confirm gets the first chance; the sweeper only picks up what it left."""
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "soon.wav", audio_samples.wav(0.2), "audio/wav")
        swept = run_sweep({**env, "SOUNDPOST_STAGING_GRACE": "3600"})
    assert swept.returncode == 0, swept.stderr
    assert "promoted 0" in swept.stdout
    assert key in object_keys(s3, bucket) and receiver.received == []


def test_a_sweep_deletes_a_staging_object_past_its_lifetime_without_announcing_it(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """An upload id older than SOUNDPOST_STAGING_LIFETIME is a leftover: deleted, never promoted."""
    old = keys.build_key("uploads/", ALICE, keys.new_upload_id(time.time() - 7200), "old.wav")
    devstack.s3_admin(s3).put_object(
        Bucket=bucket, Key=old, Body=audio_samples.wav(0.1), ContentType="audio/wav"
    )
    swept = run_sweep({**env, "SOUNDPOST_STAGING_LIFETIME": "3600"})
    assert swept.returncode == 0, swept.stderr
    assert "expired 1" in swept.stdout and "promoted 0" in swept.stdout
    assert object_keys(s3, bucket) == [] and receiver.received == []


def test_concurrent_promotions_of_one_upload_give_one_library_object_and_one_delivery(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Confirms, events and sweeps racing on one upload, three times over: one object, one webhook each time."""
    with signed_in(env) as alice:
        for round_ in range(3):
            data = audio_samples.wav(0.5 + round_)
            key = uppy.simple_upload(alice, f"race-{round_}.wav", data, "audio/wav")
            upload_id = upload_id_of(key)
            other = subprocess.Popen(
                [sys.executable, "-m", "service", "sweep"],
                env={**os.environ, **env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

            async def race(upload_id: str = upload_id, key: str = key) -> list[object]:
                async with opened(env) as state:
                    runs = [promotion.promote_upload(state, ALICE, upload_id) for _ in range(3)]
                    runs += [promotion.promote_staged(state, key) for _ in range(3)]
                    return list(await asyncio.gather(*runs, sweep(state)))

            results = asyncio.run(race())
            _, err = other.communicate(timeout=120)
            assert other.returncode == 0, err
            confirms = [r for r in results[:3] if isinstance(r, promotion.Promotion)]
            assert [r.outcome for r in confirms] == ["promoted"] * 3, results
            assert all(r.upload is not None and r.upload.id == upload_id for r in confirms)
            assert library_keys(s3, bucket, upload_id) == [
                keys.library_key("uploads/", ALICE, upload_id, f"race-{round_}.wav")
            ]
            assert len(receiver.about(upload_id)) == 1
            assert confirm(alice, upload_id).status_code == 200
    assert len(receiver.received) == 3


def promoted_while(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    upload_id: str,
    meanwhile: Callable[[Resources], Awaitable[None]],
) -> tuple[promotion.Promotion, int]:
    """Promote alice's upload with ``meanwhile`` run right after its first check; the outcome and the checks made."""
    verify = promotion._verify
    checks: list[int] = []

    async def checked_then_meanwhile(resources: Resources, *args: Any, **kwargs: Any) -> Any:
        verdict = await verify(resources, *args, **kwargs)
        checks.append(1)
        if len(checks) == 1:
            await meanwhile(resources)
        return verdict

    monkeypatch.setattr(promotion, "_verify", checked_then_meanwhile)

    async def promote() -> promotion.Promotion:
        async with opened(env) as state:
            promoted = await promotion.promote_upload(state, ALICE, upload_id)
            await promotion.announcements_finished(10)  # confirm answers before it announces
            return promoted

    return asyncio.run(promote()), len(checks)


def test_a_racer_whose_check_outlasts_a_whole_promotion_announces_nothing(
    env: dict[str, str],
    receiver: Receiver,
    s3: devstack.S3Endpoint,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A promoter still verifying while another promotes, announces and releases the upload does not announce it again."""
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "slow.wav", audio_samples.wav(0.5), "audio/wav")
    upload_id = upload_id_of(key)

    async def overtaken(resources: Resources) -> None:  # by a whole promotion, before this racer claims
        overtaker = await promotion.promote_upload(resources, ALICE, upload_id)
        assert overtaker.outcome == "promoted"

    result, checks = promoted_while(env, monkeypatch, upload_id, overtaken)
    assert result.outcome == "promoted" and checks == 2
    assert library_keys(s3, bucket, upload_id) == [keys.library_key("uploads/", ALICE, upload_id, "slow.wav")]
    assert len(receiver.about(upload_id)) == 1
    with admin(s3) as client:
        outbox = client.list_objects_v2(Bucket=bucket, Prefix=keys.outbox_key("uploads/", upload_id))
    assert outbox.get("KeyCount", 0) == 0


def test_a_crafted_flac_is_decoded_in_workers_while_the_service_keeps_answering(env: dict[str, str]) -> None:
    """65,535 empty metadata blocks and no audio: each refused as no_samples, /healthz answering throughout."""
    crafted = audio_samples.flac_with_empty_blocks()
    with signed_in(env) as alice:
        ids = [upload_id_of(uppy.simple_upload(alice, f"c{n}.flac", crafted, "audio/flac")) for n in range(6)]
        answers: list[httpx.Response] = []
        workers = [threading.Thread(target=lambda i=i: answers.append(confirm(alice, i))) for i in ids]
        for worker in workers:
            worker.start()
        with httpx.Client(base_url=str(alice.base_url)) as probe:
            while any(w.is_alive() for w in workers):
                assert probe.get("/healthz").status_code == 200
                time.sleep(0.01)
        for worker in workers:
            worker.join()
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(422, "no_samples")] * 6


def test_quota_refuses_at_presign_and_at_promotion_and_leaves_other_users_alone(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """A user at the limit gets 413 quota_exceeded at presign; a file that only turns out too big is refused at promotion."""
    data = audio_samples.wav(1.0)
    quota = {**env, "SOUNDPOST_USER_QUOTA_BYTES": str(len(data) * 3 // 2)}
    with signed_in(quota) as alice:
        first = upload_id_of(uppy.simple_upload(alice, "a.wav", data, "audio/wav"))
        declared = uppy.params(alice, "b.wav", "audio/wav", len(data))
        assert declared.status_code == 413  # the first upload's reservation leaves no room for it
        undeclared = uppy.params(alice, "b.wav", "audio/wav")  # no size: any room admits it
        assert undeclared.status_code == 200, undeclared.text
        assert uppy.post_form(undeclared.json(), "b.wav", data, "audio/wav").status_code == 201
        second = upload_id_of(undeclared.json()["fields"]["key"])
        assert confirm(alice, first).status_code == 200
        refused = confirm(alice, second)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "quota_exceeded"
        again = alice.post(
            "/api/upload/presigned-url",
            json={"filename": "c.wav", "contentType": "audio/wav", "size": len(data)},
            headers=uppy.same_origin(alice),
        )
        assert again.status_code == 413 and again.json()["error"]["code"] == "quota_exceeded"
        assert again.json()["error"]["path"] == "$.size"
        signed = uppy.params(alice, "d.wav", "audio/wav", len(data))
        assert signed.status_code == 413 and signed.json()["error"]["code"] == "quota_exceeded"
        with httpx.Client(base_url=str(alice.base_url), follow_redirects=False, timeout=30) as bob:
            assert sign_in(bob, "fake", "bob").status_code == 303
            theirs = upload_id_of(uppy.simple_upload(bob, "b.wav", data, "audio/wav"))
            assert confirm(bob, theirs).status_code == 200
    assert library_keys(s3, bucket, second) == []
    assert [k for k in object_keys(s3, bucket) if f"/{second}/" in k] == []
    [event] = receiver.about(second)
    assert event["type"] == "upload.rejected" and event["data"]["code"] == "quota_exceeded"  # type: ignore[index]


def test_no_route_or_sweep_reaches_another_users_upload(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Bob can neither confirm, list, play nor delete alice's upload, and a sweep files hers under her own library."""
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "hers.wav", audio_samples.wav(0.3), "audio/wav")
        upload_id = upload_id_of(key)
        with httpx.Client(base_url=str(alice.base_url), follow_redirects=False, timeout=30) as bob:
            assert sign_in(bob, "fake", "bob").status_code == 303
            assert confirm(bob, upload_id).status_code == 404
            assert bob.get(f"/api/uploads/{upload_id}/url").status_code == 404
            assert bob.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(bob)).status_code == 404
            assert bob.get("/api/uploads").json()["uploads"] == []
            assert key in object_keys(s3, bucket) and receiver.received == []
            assert run_sweep(env).returncode == 0
            assert bob.get("/api/uploads").json()["uploads"] == []
            assert bob.get(f"/api/uploads/{upload_id}/url").status_code == 404
            assert bob.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(bob)).status_code == 404
    assert library_keys(s3, bucket) == [keys.library_key("uploads/", ALICE, upload_id, "hers.wav")]
    # A staging object under bob's prefix reusing alice's id is not promoted into anyone's library.
    forged = keys.build_key("uploads/", BOB, upload_id, "hers.wav")
    devstack.s3_admin(s3).put_object(
        Bucket=bucket, Key=forged, Body=audio_samples.wav(0.3), ContentType="audio/wav"
    )

    async def attempt() -> promotion.Promotion:
        async with opened(env) as state:
            return await promotion.promote_staged(state, forged)

    assert asyncio.run(attempt()).outcome == "missing"
    assert library_keys(s3, bucket) == [keys.library_key("uploads/", ALICE, upload_id, "hers.wav")]
    assert len(receiver.received) == 1


@pytest.fixture
def rgw_env(env: dict[str, str], rgw_endpoint: devstack.S3Endpoint) -> dict[str, str]:  # noqa: F811
    """The same app on radosgw, which enforces POST policies and lets one be reused until it expires."""
    name = f"promo-{secrets.token_hex(6)}"
    devstack.create_bucket(rgw_endpoint, name, ["http://127.0.0.1"])
    return {
        **env,
        "SOUNDPOST_S3_ENDPOINT": rgw_endpoint.url,
        "SOUNDPOST_S3_REGION": rgw_endpoint.region,
        "SOUNDPOST_S3_BUCKET": name,
        "SOUNDPOST_S3_ACCESS_KEY_ID": rgw_endpoint.access_key,
        "SOUNDPOST_S3_SECRET_ACCESS_KEY": rgw_endpoint.secret_key,
    }


def test_reposting_the_policy_after_confirm_never_changes_what_playback_serves(
    rgw_env: dict[str, str],
    receiver: Receiver,
    rgw_endpoint: devstack.S3Endpoint,  # noqa: F811
) -> None:
    """radosgw accepts the re-POST (201), but it lands in staging: playback serves the verified bytes, and a sweep deletes it."""
    data = audio_samples.wav(1.0)
    bucket = rgw_env["SOUNDPOST_S3_BUCKET"]
    with signed_in(rgw_env) as alice:
        signed = uppy.params(alice, "take.wav", "audio/wav", len(data))
        assert signed.status_code == 200
        assert uppy.post_form(signed.json(), "take.wav", data, "audio/wav").status_code == 201
        key = signed.json()["fields"]["key"]
        upload_id = upload_id_of(key)
        assert confirm(alice, upload_id).status_code == 200
        announced_and_cleared(receiver, upload_id, rgw_endpoint, bucket, key)
        html = b"<html><script>steal()</script></html>"
        assert uppy.post_form(signed.json(), "take.wav", html, "audio/wav").status_code == 201
        link = alice.get(f"/api/uploads/{upload_id}/url")
        assert httpx.get(link.json()["url"]).content == data
        swept = run_sweep(rgw_env)
        assert swept.returncode == 0, swept.stderr
        assert "replaced 1" in swept.stdout
        again = confirm(alice, upload_id)
        assert again.status_code == 200 and again.json()["size"] == len(data)
        assert httpx.get(alice.get(f"/api/uploads/{upload_id}/url").json()["url"]).content == data
    assert key not in object_keys(rgw_endpoint, bucket)
    assert len(receiver.about(upload_id)) == 1


def test_the_in_process_sweeper_promotes_what_nobody_confirmed(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """With SOUNDPOST_SWEEP_INTERVAL set, the app itself promotes and announces an upload within a few passes."""
    with signed_in({**env, "SOUNDPOST_SWEEP_INTERVAL": "1"}) as alice:
        upload_id = upload_id_of(
            uppy.simple_upload(alice, "tab-closed.wav", audio_samples.wav(0.4), "audio/wav")
        )
        deadline = time.monotonic() + 15
        while not receiver.about(upload_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        [listed] = alice.get("/api/uploads").json()["uploads"]
    assert (listed["id"], listed["status"]) == (upload_id, "verified")
    assert [e["type"] for e in receiver.about(upload_id)] == ["upload.confirmed"]
    assert library_keys(s3, bucket, upload_id) != []


class _OpenUploads:
    """Just enough of Storage for the sweeper's multipart step: two open uploads, one past its lifetime."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        old = keys.build_key("uploads/", ALICE, keys.new_upload_id(), "old.wav")
        new = keys.build_key("uploads/", ALICE, keys.new_upload_id(), "new.wav")
        self.uploads = [OpenUpload(old, "u-old", now - timedelta(days=2)), OpenUpload(new, "u-new", now)]
        self.aborted: list[tuple[str, str]] = []

    async def open_uploads(self, prefix: str, limit: int) -> list[OpenUpload]:
        assert prefix == "uploads/incoming/"
        return self.uploads

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self.aborted.append((key, upload_id))


def test_the_sweeper_aborts_multipart_uploads_past_their_lifetime_only() -> None:
    """An abandoned multipart upload older than SOUNDPOST_STAGING_LIFETIME is aborted; a fresh one is left alone."""
    storage = _OpenUploads()
    state = cast("Resources", {"settings": load_settings(MINIMAL_SETTINGS), "storage": storage})
    report = SweepReport()
    asyncio.run(sweeper._multipart(state, report))
    assert storage.aborted == [(storage.uploads[0].key, "u-old")]
    assert report.aborted == 1


def test_on_radosgw_a_receiver_that_was_down_is_announced_by_the_next_sweep_exactly_once(
    rgw_env: dict[str, str],
    receiver: Receiver,
    rgw_endpoint: devstack.S3Endpoint,  # noqa: F811
) -> None:
    """radosgw's If-Match decides who takes the stale lease: one redelivery, then none."""
    receiver.statuses = [500] * 1000
    env = {**rgw_env, "SOUNDPOST_WEBHOOK_TIMEOUT": "1"}
    with signed_in(env) as alice:
        upload_id = upload_id_of(uppy.simple_upload(alice, "later.wav", audio_samples.wav(0.2), "audio/wav"))
        assert confirm(alice, upload_id).status_code == 200
    refused = len(receiver.received)
    receiver.statuses.clear()
    first, second = sweep_twice(rgw_env)
    assert "redelivered 1" in first and "redelivered 0" in second
    assert len(receiver.received) == refused + 1
    assert {h["webhook-id"] for h, _ in receiver.received} == {f"msg_{upload_id}"}
    assert keys.outbox_key("uploads/", upload_id) not in object_keys(
        rgw_endpoint, rgw_env["SOUNDPOST_S3_BUCKET"]
    )


def test_a_deleted_upload_cannot_be_brought_back_by_its_reusable_policy(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """DELETE of a pending upload removes it and spends the id: a re-POST is deleted by the next sweep, never announced."""
    data = audio_samples.wav(0.3)
    with signed_in(env) as alice:
        signed = uppy.params(alice, "gone.wav", "audio/wav", len(data))
        assert uppy.post_form(signed.json(), "gone.wav", data, "audio/wav").status_code == 201
        upload_id = upload_id_of(signed.json()["fields"]["key"])
        assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 204
        assert alice.get("/api/uploads").json()["uploads"] == []
        assert uppy.post_form(signed.json(), "gone.wav", data, "audio/wav").status_code == 201
        swept = run_sweep(env)
        assert swept.returncode == 0, swept.stderr
        assert "replaced 1" in swept.stdout
        assert confirm(alice, upload_id).status_code == 404
        assert alice.get("/api/uploads").json()["uploads"] == []
    assert [k for k in object_keys(s3, bucket) if upload_id in k] == [keys.decided_key("uploads/", upload_id)]
    assert receiver.received == []


class StoreLog(logging.Handler):
    """The requests moto's in-process server answers (werkzeug's access log), as (method, path, query, status)."""

    LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d+)')
    COLOUR = re.compile(r"\x1b\[[\d;]*m")  # werkzeug colours statuses other than 200

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = self.LINE.search(self.COLOUR.sub("", record.getMessage()))
        if found:
            path, _, query = found["target"].partition("?")
            self.seen.append((found["method"], unquote(path), query, int(found["status"])))

    @contextlib.contextmanager
    def watching(self) -> Iterator[StoreLog]:
        log = logging.getLogger("werkzeug")
        level = log.level
        log.setLevel(logging.INFO)
        log.addHandler(self)
        try:
            yield self
        finally:
            log.removeHandler(self)
            log.setLevel(level)


def confirmed_requests(
    alice: httpx.Client, upload_id: str, bucket: str, last: str = "/incoming/"
) -> list[str]:
    """Confirm, and name each store request it made (until the DELETE of a path holding ``last``, after the
    announcement), by method, area and status."""
    with StoreLog().watching() as log:
        assert confirm(alice, upload_id).status_code == 200
        for _ in range(100):  # the announcement is delivered after confirm answers
            if any(method == "DELETE" and last in path for method, path, _, _ in log.seen):
                break
            time.sleep(0.05)
    kinds = []
    for method, path, query, status in log.seen:
        assert path.startswith(f"/{bucket}"), path
        place = next(
            (name for name in ("decided", "outbox", "incoming", "library") if f"/{name}/" in path), "bucket"
        )
        record = " .parts.json" if path.endswith(keys.PARTS_NAME) else ""
        kinds.append(
            f"{method} {place}{record}{' ?list' if 'list-type' in query or 'prefix=' in query else ''} {status}"
        )
    return kinds


def announced_and_cleared(
    receiver: Receiver, upload_id: str, s3: devstack.S3Endpoint, bucket: str, key: str
) -> None:
    """Wait (bounded) for what confirm leaves to the background: the announcement, then the staging DELETE."""
    deadline = time.monotonic() + 30  # a bound on a hang, not a performance assertion
    while not receiver.about(upload_id) or key in object_keys(s3, bucket):
        assert time.monotonic() < deadline, "the upload was never announced and cleared"
        time.sleep(0.05)


def posted_take(alice: httpx.Client, data: bytes) -> dict[str, Any]:
    """The presign answer of a WAV named take.wav, once the file was POSTed with it."""
    signed = uppy.params(alice, "take.wav", "audio/wav", len(data))
    assert uppy.post_form(signed.json(), "take.wav", data, "audio/wav").status_code == 201
    answer: dict[str, Any] = signed.json()
    return answer


def test_the_same_file_posted_again_after_confirm_is_answered_from_its_record_and_removed(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint
) -> None:
    """No record is read before decoding, so a re-POST is decoded, loses to the decided record, and is deleted."""
    data = audio_samples.wav(1.0)
    bucket = env["SOUNDPOST_S3_BUCKET"]
    with signed_in(env) as alice:
        policy = posted_take(alice, data)
        key = policy["fields"]["key"]
        upload_id = upload_id_of(key)
        first = confirm(alice, upload_id)
        assert first.status_code == 200
        announced_and_cleared(receiver, upload_id, s3, bucket, key)
        assert uppy.post_form(policy, "take.wav", data, "audio/wav").status_code == 201
        again = confirm(alice, upload_id)
        assert (again.status_code, again.json()) == (200, first.json())
        assert [u["id"] for u in alice.get("/api/uploads").json()["uploads"]] == [upload_id]
    assert key not in object_keys(s3, bucket)
    assert not [k for k in object_keys(s3, bucket) if "/outbox/" in k]
    assert len(receiver.about(upload_id)) == 1


def test_a_confirm_makes_seven_store_requests_of_which_the_decoder_reads_one(
    env: dict[str, str], receiver: Receiver
) -> None:
    """From the listing to the staging object's DELETE, each request named: no HEAD (the listing and the
    decoder's read state what it would), no record read before the claim, and the record written twice."""
    data = audio_samples.wav(1.0)
    bucket = env["SOUNDPOST_S3_BUCKET"]
    with signed_in(env) as alice:
        upload_id = upload_id_of(posted_take(alice, data)["fields"]["key"])
        kinds = confirmed_requests(alice, upload_id, bucket)
    assert (
        kinds
        == [
            "GET bucket ?list 200",  # the staging object this id names, its size and ETag (none: decided, or missing)
            "GET incoming 206",  # the decoding worker streams it once (ranged, If-Match) and learns its type
            "PUT library 200",  # the peaks, named by the facts, beside where the upload goes
            "PUT decided 200",  # the claim (If-None-Match: *), kept while the id could be reused
            "PUT library 200",  # the server-side copy
            "PUT decided 200",  # announced: the record is final (If-Match)
            "DELETE incoming 204",  # last: until now the staging object marked a promotion under way
        ]
    ), kinds
    assert len(receiver.about(upload_id)) == 1


def test_part_checksums_cost_a_confirm_one_get_and_one_delete_of_their_record_and_no_second_read(
    env: dict[str, str], receiver: Receiver
) -> None:
    """A multipart upload whose parts declared SHA-256: the record is read after HEAD and deleted with staging;
    the worker still reads the object once, hashing each part as it decodes."""
    data = audio_samples.wav(1.0)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    with signed_in(env) as alice:
        upload = uppy.Multipart.create(alice, "take.wav", "audio/wav", len(data), checksums=True)
        assert upload.complete([upload.put_part(1, data, sha)]).status_code == 200
        kinds = confirmed_requests(
            alice, upload_id_of(upload.key), env["SOUNDPOST_S3_BUCKET"], keys.PARTS_NAME
        )
    assert kinds == [
        "GET bucket ?list 200",
        "HEAD incoming 200",  # multipart, so HEADed: its metadata says the parts declared checksums
        "GET incoming .parts.json 200",  # what they declared, and each part's size
        "GET incoming 206",  # the one read: whole-file and per-part SHA-256 together
        "PUT library 200",
        "PUT decided 200",
        "PUT library 200",
        "PUT decided 200",
        "DELETE incoming 204",
        "DELETE incoming .parts.json 204",
    ], kinds
    assert len(receiver.about(upload_id_of(upload.key))) == 1


def test_a_file_replaced_after_its_check_leaves_one_set_of_facts_those_of_what_is_promoted(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    s3: devstack.S3Endpoint,
    bucket: str,
    receiver: Receiver,
) -> None:
    """Checked as 1 s, replaced by 2 s before the copy: the copy is undone, the 2 s file promoted, one facts sidecar left."""
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "take.wav", audio_samples.wav(1.0), "audio/wav")
    upload_id = upload_id_of(key)
    replacement = audio_samples.wav(2.0)

    async def reposted(resources: Resources) -> None:  # a re-POST of the policy lands before the copy
        with admin(s3) as client:
            client.put_object(Bucket=bucket, Key=key, Body=replacement, ContentType="audio/wav")

    result, checks = promoted_while(env, monkeypatch, upload_id, reposted)
    assert result.outcome == "promoted" and checks == 2
    assert result.upload is not None and result.upload.duration_seconds == pytest.approx(2.0, abs=0.05)
    folder = [k for k in object_keys(s3, bucket) if "/library/" in k and f"/{upload_id}/" in k]
    facts = [k.rsplit("/", 1)[1] for k in folder if "/.audio-" in k]
    assert facts == [".audio-2000-pcm_s16le-8000-1-128000.json"], folder
    assert (
        stored_object(s3, bucket, keys.library_key("uploads/", ALICE, upload_id, "take.wav"))[0]
        == replacement
    )
    assert len(receiver.about(upload_id)) == 1
