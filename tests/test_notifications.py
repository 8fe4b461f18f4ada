"""radosgw bucket notifications set up by ``soundpost bucket setup``: uploads nobody confirms are promoted and announced.

The module's bucket is set up once, by the real command, with the events route of an
app on a fixed loopback port as its topic's push endpoint; each test serves the app
there and uploads as a browser does (POST form, or Uppy's multipart), then makes no
further call: radosgw's push alone must bring the upload to the library and the
announcement to a real receiver, which checks its Standard Webhooks signature.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import devstack
from service.app import create_app
from service.core import keys
from service.lifecycle.sweeper import sweep_once
from service.settings import EVENTS_PATH, load_settings
from tests.support import audio_samples, uppy
from tests.support.bucket import run_bucket_setup
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, new_bucket, object_keys, stored_object
from tests.support.servers import bound_socket, serve_asgi
from tests.support.settings import s3_settings
from tests.support.webhooks import SECRET, Receiver

pytestmark = pytest.mark.peers  # real servers started by the tests themselves

MiB = 1024 * 1024
# From the end of the upload to the announcement: radosgw pushes within about a second.
DELIVERY_SECONDS = 10
# radosgw picks up a new persistent topic's queue on a 30-second cycle, once per topic.
TOPIC_START_SECONDS = 60


@dataclass(frozen=True)
class PushTarget:
    """A radosgw bucket whose notifications push to the events route at ``port`` with ``token``."""

    endpoint: devstack.S3Endpoint
    bucket: str
    port: int
    token: str

    def setup_env(self) -> dict[str, str]:
        """The settings ``soundpost bucket setup`` runs with: the app's public URL, token and bucket."""
        return {
            "SOUNDPOST_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "SOUNDPOST_SESSION_SECRET": "s" * 48,
            "SOUNDPOST_PROVIDERS": "fake",
            "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
            "SOUNDPOST_PROVIDER_FAKE_CLIENT_ID": "soundpost-test",
            "SOUNDPOST_PROVIDER_FAKE_CLIENT_SECRET": "soundpost-test-secret",
            "SOUNDPOST_EVENTS_TOKEN": self.token,
            **s3_settings(self.endpoint, self.bucket),
        }


def wait_for_topic(target: PushTarget) -> None:
    """Put a probe under the staging prefix and wait until radosgw pushes it to the port."""
    pushed: list[bytes] = []

    async def events(request: Request) -> Response:
        pushed.append(await request.body())
        return Response(status_code=200)

    probe = Starlette(routes=[Route(EVENTS_PATH, events, methods=["POST"])])
    with serve_asgi(lambda _: probe, port=target.port):
        with admin(target.endpoint) as client:
            client.put_object(Bucket=target.bucket, Key="uploads/incoming/probe", Body=b"probe")
        deadline = time.monotonic() + TOPIC_START_SECONDS
        while not pushed:
            assert time.monotonic() < deadline, f"radosgw pushed nothing within {TOPIC_START_SECONDS}s"
            time.sleep(0.2)
    assert b"uploads/incoming/probe" in pushed[0]
    with admin(target.endpoint) as client:
        client.delete_object(Bucket=target.bucket, Key="uploads/incoming/probe")


@pytest.fixture(scope="module")
def push_target(request: pytest.FixtureRequest) -> PushTarget:
    """A bucket set up by ``soundpost bucket setup`` with events on, and its topic already pushing."""
    endpoint: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
    with bound_socket() as sock:
        port = sock.getsockname()[1]
    target = PushTarget(endpoint, new_bucket(endpoint), port, secrets.token_urlsafe(32))
    done = run_bucket_setup(target.setup_env())
    assert done.returncode == 0, done.stderr
    assert f"topic soundpost-{target.bucket}: created" in done.stdout
    assert "notification soundpost-staging: added (s3:ObjectCreated:* under uploads/incoming/)" in done.stdout
    assert target.token not in done.stdout
    wait_for_topic(target)
    return target


@pytest.fixture
def app_env(app_env: dict[str, str], push_target: PushTarget, receiver: Receiver) -> dict[str, str]:
    return {
        **app_env,
        **s3_settings(push_target.endpoint, push_target.bucket),
        "SOUNDPOST_EVENTS_TOKEN": push_target.token,
        "SOUNDPOST_WEBHOOK_URL": receiver.url,
        "SOUNDPOST_WEBHOOK_SECRET": SECRET,
        "SOUNDPOST_MAX_UPLOAD_BYTES": str(16 * MiB),
    }


@pytest.fixture
def app_url(app_env: dict[str, str], push_target: PushTarget) -> Iterator[str]:
    """The app on the port the bucket's topic pushes to."""

    def make(base_url: str) -> object:
        return create_app({**app_env, "SOUNDPOST_PUBLIC_URL": base_url})

    with serve_asgi(make, port=push_target.port) as url:
        yield url


def announcements(receiver: Receiver, upload_id: str) -> list[dict[str, object]]:
    """The verified deliveries about one upload id, waiting up to DELIVERY_SECONDS for the first."""
    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        about = [event for event in receiver.verified() if event["data"]["id"] == upload_id]  # type: ignore[index]
        if about or time.monotonic() > deadline:
            return about
        time.sleep(0.1)


def test_bucket_setup_again_finds_the_topic_and_notification_unchanged(push_target: PushTarget) -> None:
    """Idempotent with events on too: a second run changes nothing and says so, step by step."""
    again = run_bucket_setup(push_target.setup_env())
    assert again.returncode == 0, again.stderr
    assert f"topic soundpost-{push_target.bucket}: unchanged" in again.stdout
    assert "notification soundpost-staging: unchanged" in again.stdout
    with admin(push_target.endpoint) as client:
        [config] = client.get_bucket_notification_configuration(Bucket=push_target.bucket)[
            "TopicConfigurations"
        ]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/incoming/"}]


def upload_id_of(key: str) -> str:
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None, key
    return parsed[1]


def assert_promoted(target: PushTarget, staging_key: str, data: bytes, content_type: str) -> None:
    """The upload's bytes are in the library under the same id, and its staging object is gone."""
    owner, upload_id, filename = keys.parse_key("uploads/", staging_key) or ("", "", "")
    library = keys.library_key("uploads/", owner, upload_id, filename)
    assert stored_object(target.endpoint, target.bucket, library) == (data, content_type)
    assert staging_key not in object_keys(target.endpoint, target.bucket)


def test_a_posted_upload_nobody_confirms_is_promoted_and_announced(
    alice: httpx.Client, push_target: PushTarget, receiver: Receiver
) -> None:
    """A browser POST upload, then nothing from the client: radosgw's push promotes it and one webhook announces it."""
    data = audio_samples.wav(1.0)
    started = time.monotonic()
    key = uppy.simple_upload(alice, "take-1.wav", data, "audio/wav")
    [event] = announcements(receiver, upload_id_of(key))
    assert time.monotonic() - started < DELIVERY_SECONDS
    assert event["type"] == "upload.confirmed"
    assert_promoted(push_target, key, data, "audio/wav")
    time.sleep(1)  # a second push or a late duplicate would arrive by now
    assert len(announcements(receiver, upload_id_of(key))) == 1


def test_a_multipart_upload_nobody_confirms_is_promoted_and_announced(
    alice: httpx.Client, push_target: PushTarget, receiver: Receiver
) -> None:
    """Uppy's multipart upload, completed and never confirmed, is promoted on radosgw's push and announced once."""
    data = audio_samples.wav_of(os.urandom(6 * MiB))
    started = time.monotonic()
    completed = uppy.multipart_upload(alice, "long-take.wav", data, "audio/wav", part_size=5 * MiB)
    assert completed.status_code == 200, completed.text
    key = str(completed.json()["key"])
    [event] = announcements(receiver, upload_id_of(key))
    assert time.monotonic() - started < DELIVERY_SECONDS + 10  # the parts' own upload time included
    assert event["type"] == "upload.confirmed"
    assert_promoted(push_target, key, data, "audio/wav")
    time.sleep(1)
    assert len(announcements(receiver, upload_id_of(key))) == 1


def test_html_posted_as_audio_and_never_confirmed_is_rejected_by_the_push(
    alice: httpx.Client, push_target: PushTarget, receiver: Receiver
) -> None:
    """The first promotion attempt is the push: the HTML is deleted, announced as rejected, and never listed as verified."""
    key = uppy.simple_upload(alice, "song.mp3", b"<!doctype html><script>alert(1)</script>", "audio/mpeg")
    [event] = announcements(receiver, upload_id_of(key))
    assert event["type"] == "upload.rejected"
    assert not [
        k
        for k in object_keys(push_target.endpoint, push_target.bucket)
        if upload_id_of_any(k) == upload_id_of(key)
    ]
    listed = alice.get("/api/uploads").json()["uploads"]
    assert [u for u in listed if u["id"] == upload_id_of(key) and u["status"] == "verified"] == []


def upload_id_of_any(key: str) -> str | None:
    """The upload id of a staging or library key, else None."""
    parsed = keys.parse_key("uploads/", key) or keys.parse_library_key("uploads/", key)
    return parsed[1] if parsed else None


RACE_ROUNDS = 5


def event_for(bucket: str, key: str) -> bytes:
    """The record radosgw pushes for a browser POST, as a store retrying the push would send it again."""
    record = {
        "eventName": "ObjectCreated:Post",
        "eventSource": "ceph:s3",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return json.dumps({"Records": [record]}).encode()


def push_again(app_url: str, target: PushTarget, key: str) -> Callable[[], object]:
    """The push a store retrying would send for ``key``, ready to race."""
    return functools.partial(
        httpx.post,
        f"{app_url}/api/events/s3",
        params={"token": target.token},
        content=event_for(target.bucket, key),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def race(actions: list[Callable[[], object]]) -> list[object]:
    """Run the actions on threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except Exception as exc:  # reported by the assertions below, with the rest of the round
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_confirm_a_push_and_a_sweep_racing_on_one_upload_give_one_library_object_and_one_announcement(
    alice: httpx.Client, app_env: dict[str, str], app_url: str, push_target: PushTarget, receiver: Receiver
) -> None:
    """Each round: radosgw's own push, the client's confirm, a repeated push and a sweeper replica's pass, all at once; one result."""
    # Another replica's sweeper, with no grace period: it promotes whatever it finds staged.
    sweeper = load_settings({**app_env, "SOUNDPOST_PUBLIC_URL": app_url, "SOUNDPOST_STAGING_GRACE": "0"})
    for _ in range(RACE_ROUNDS):
        data = audio_samples.wav(0.5)
        key = uppy.simple_upload(alice, "raced.wav", data, "audio/wav")
        upload_id = upload_id_of(key)
        confirm, push, swept = race(
            [
                functools.partial(
                    alice.post, f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice)
                ),
                push_again(app_url, push_target, key),
                functools.partial(asyncio.run, sweep_once(sweeper)),
            ]
        )
        assert isinstance(confirm, httpx.Response) and confirm.status_code == 200, confirm
        assert confirm.json()["id"] == upload_id
        assert isinstance(push, httpx.Response) and push.status_code in (200, 503), push
        assert not isinstance(swept, Exception), swept
        assert len(announcements(receiver, upload_id)) >= 1
        time.sleep(1)  # any second announcement, from whichever racer, arrives by now
        [event] = announcements(receiver, upload_id)
        assert event["type"] == "upload.confirmed"
        same_id = [
            k
            for k in object_keys(push_target.endpoint, push_target.bucket)
            if upload_id_of_any(k) == upload_id
        ]
        assert same_id == [
            keys.library_key("uploads/", keys.user_id("fake", "alice"), upload_id, "raced.wav")
        ]
        assert stored_object(push_target.endpoint, push_target.bucket, same_id[0]) == (data, "audio/wav")


RACED_UPLOADS = 20


def test_twenty_uploads_raced_by_confirms_pushes_and_sweeps_are_each_confirmed_stored_and_announced_once(
    alice: httpx.Client, app_env: dict[str, str], app_url: str, push_target: PushTarget, receiver: Receiver
) -> None:
    """Twenty uploads at once, each confirmed the moment it is stored while radosgw's own push, a repeated
    push and sweeper passes (no grace period) race it: every confirm is 200 with its upload (never 404),
    and each upload ends as one library object with one announcement."""
    sweeper = load_settings({**app_env, "SOUNDPOST_PUBLIC_URL": app_url, "SOUNDPOST_STAGING_GRACE": "0"})
    data = audio_samples.wav(0.5)
    owner = keys.user_id("fake", "alice")

    def upload_and_confirm(index: int) -> Callable[[], object]:
        def run() -> object:
            key = uppy.simple_upload(alice, f"raced-{index}.wav", data, "audio/wav")
            upload_id = upload_id_of(key)
            confirmed, _ = race(
                [
                    functools.partial(
                        httpx.post,
                        f"{app_url}/api/uploads/{upload_id}/confirm",
                        headers=uppy.same_origin(alice),
                        cookies=alice.cookies,
                        timeout=60,  # twenty promotions at once on a shared machine: not a speed test
                    ),
                    push_again(app_url, push_target, key),
                ]
            )
            return upload_id, f"raced-{index}.wav", confirmed

        return run

    def sweeping() -> object:
        return [asyncio.run(sweep_once(sweeper)) for _ in range(3)]

    results = race([upload_and_confirm(i) for i in range(RACED_UPLOADS)] + [sweeping, sweeping])
    assert not [r for r in results if isinstance(r, Exception)], results
    raced = cast("list[tuple[str, str, object]]", results[:RACED_UPLOADS])
    for upload_id, _, answer in raced:
        assert isinstance(answer, httpx.Response) and answer.status_code == 200, (upload_id, answer)
        assert answer.json()["id"] == upload_id
    time.sleep(2)  # any second announcement, from whichever racer, arrives by now
    for upload_id, _, _ in raced:
        [event] = announcements(receiver, upload_id)
        assert event["type"] == "upload.confirmed"
    names = {upload_id: name for upload_id, name, _ in raced}
    stored = [
        k for k in object_keys(push_target.endpoint, push_target.bucket) if upload_id_of_any(k) in names
    ]
    assert sorted(stored) == sorted(keys.library_key("uploads/", owner, i, name) for i, name in names.items())
