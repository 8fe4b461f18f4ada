"""Knowing the audio, through the app: decoded facts, peaks and renditions, refusals, durability, and a killed worker.

Against moto, with real encoder output (tests/support/encoded.py) and the real
decoding worker unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import signal
import time
from pathlib import Path

import av
import httpx
import pytest

from service import devstack
from service.core import audio_types, keys
from service.errors import ApiError
from service.lifecycle import forking, promotion
from service.lifecycle.sweeper import open_resources
from service.settings import load_settings
from tests.conftest import signed_in
from tests.support import audio_samples, uppy
from tests.support.encoded import SECONDS, declared, encoded, filename, garbage, header_only
from tests.support.flows import sign_in
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, object_keys
from tests.support.settings import s3_settings
from tests.support.sweep import run_sweep
from tests.support.webhooks import Receiver

ALICE = keys.user_id("fake", "alice")


@pytest.fixture
def env(sweeping_env: dict[str, str]) -> dict[str, str]:
    """The webhook on, no grace period (a sweep promotes at once), renditions on."""
    return {**sweeping_env, "SOUNDPOST_RENDITIONS": "speech"}


def upload(client: httpx.Client, name: str, data: bytes, content_type: str | None = None) -> str:
    """Upload as the page does; ``content_type`` (with its extension) mislabels the file."""
    named = f"tone{audio_types.extensions_for(content_type)[0]}" if content_type else filename(name)
    key = uppy.simple_upload(client, named, data, content_type or declared(name))
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None
    return parsed[1]


def confirm(client: httpx.Client, upload_id: str) -> httpx.Response:
    return client.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(client))


def events(receiver: Receiver, upload_id: str) -> list[dict[str, object]]:
    return [
        e
        for e, (h, _) in zip(receiver.verified(), receiver.received, strict=True)
        if h["webhook-id"] == f"msg_{upload_id}"
    ]


def in_folder(s3: devstack.S3Endpoint, bucket: str, upload_id: str) -> list[str]:
    return [k for k in object_keys(s3, bucket) if k.startswith("uploads/library/") and f"/{upload_id}/" in k]


def close_to(seconds: float, truth: float = SECONDS) -> bool:
    return abs(seconds - truth) <= max(0.05, truth * 0.01)


def test_a_webm_recording_is_confirmed_with_its_decoded_length_audio_peaks_and_rendition(
    env: dict[str, str], receiver: Receiver
) -> None:
    """Opus in WebM (what MediaRecorder writes; no duration in its header): every fact from decoding."""
    with signed_in(env) as alice:
        upload_id = upload(alice, "webm", encoded("webm"))
        answer = confirm(alice, upload_id)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        peaks = alice.get(body["peaksUrl"])
        rendition = alice.get(body["renditionUrl"])
    assert close_to(body["durationSeconds"])
    assert body["audio"]["codec"] == "opus" and body["audio"]["sampleRate"] == 48000
    assert body["audio"]["channels"] == 1 and body["audio"]["bitRate"] > 0
    assert (body["peaksUrl"], body["renditionUrl"]) == (
        f"/api/uploads/{upload_id}/peaks",
        f"/api/uploads/{upload_id}/rendition",
    )
    assert peaks.status_code == 200 and peaks.headers["content-type"] == "application/json"
    waveform = peaks.json()
    assert {k: waveform[k] for k in ("version", "channels", "sample_rate", "bits")} == {
        "version": 2,
        "channels": 1,
        "sample_rate": 16000,
        "bits": 8,
    }
    assert len(waveform["data"]) == 2 * waveform["length"] > 0
    assert rendition.status_code == 200 and rendition.json()["contentType"] == "audio/flac"
    flac = httpx.get(rendition.json()["url"]).content
    with av.open(io.BytesIO(flac), "r") as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (16000, 1)
        samples: int = sum(frame.samples for frame in container.decode(stream))
    assert close_to(samples / 16000)
    [event] = events(receiver, upload_id)
    data = event["data"]
    assert isinstance(data, dict)
    assert event["type"] == "upload.confirmed" and close_to(data["durationSeconds"])
    assert data["audio"] == body["audio"]
    assert data["renditionKey"] == keys.sidecar_key("uploads/", ALICE, upload_id, ".speech.flac")
    assert httpx.get(data["rendition"]["url"]).content == flac


@pytest.fixture(params=["moto", "radosgw"])
def store(
    request: pytest.FixtureRequest, env: dict[str, str], s3: devstack.S3Endpoint, bucket: str
) -> tuple[dict[str, str], devstack.S3Endpoint, str]:
    """The app's settings, the store and the bucket: moto, or radosgw (which the worker's rendition PUT meets too)."""
    if request.param == "moto":
        return env, s3, bucket
    rgw: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
    name = f"facts-{secrets.token_hex(6)}"
    devstack.create_bucket(rgw, name, ["http://127.0.0.1"])
    return {**env, **s3_settings(rgw, name)}, rgw, name


def test_peaks_and_rendition_are_the_owners_only_and_go_with_the_upload(
    store: tuple[dict[str, str], devstack.S3Endpoint, str],
) -> None:
    """Another user gets 404 for both; after DELETE the owner does too, and nothing is left in the folder."""
    env, s3, bucket = store
    with signed_in(env) as alice:
        upload_id = upload(alice, "flac", encoded("flac"))
        assert confirm(alice, upload_id).status_code == 200
        assert len(in_folder(s3, bucket, upload_id)) == 3  # upload, peaks (with facts), rendition
        with httpx.Client(base_url=str(alice.base_url), follow_redirects=False, timeout=30) as bob:
            assert sign_in(bob, "fake", "bob").status_code == 303
            for path in ("peaks", "rendition"):
                theirs = bob.get(f"/api/uploads/{upload_id}/{path}")
                assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
        assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 204
        assert [alice.get(f"/api/uploads/{upload_id}/{p}").status_code for p in ("peaks", "rendition")] == [
            404
        ] * 2
    assert in_folder(s3, bucket, upload_id) == []


def test_listing_facts_survive_a_restart_of_the_app(app_env: dict[str, str]) -> None:
    """Promoted by one app process, listed by a fresh one: the facts are in the bucket, not in a cache."""
    with signed_in(app_env) as alice:
        upload_id = upload(alice, "mp3", encoded("mp3"))
        confirmed = confirm(alice, upload_id).json()
    with signed_in(app_env) as alice_again:
        [listed] = alice_again.get("/api/uploads").json()["uploads"]
    assert listed["id"] == upload_id and close_to(listed["durationSeconds"])
    assert listed["audio"] == confirmed["audio"] and listed["audio"]["codec"] == "mp3"
    assert listed["peaksUrl"] == f"/api/uploads/{upload_id}/peaks" and listed["renditionUrl"] is None


@pytest.mark.parametrize(
    ("name", "damage", "content_type", "status", "code"),
    [
        ("wav", "half", None, 422, "truncated"),
        ("wav", "header", None, 422, "no_samples"),
        ("flac", "half", None, 422, "truncated"),
        ("mp3", "garbage", None, 422, "corrupt"),
        ("mp3", "whole", "audio/wav", 422, "container_mismatch"),
    ],
)
def test_a_damaged_or_mislabelled_file_is_refused_deleted_and_announced_with_its_reason(
    env: dict[str, str],
    receiver: Receiver,
    s3: devstack.S3Endpoint,
    bucket: str,
    name: str,
    damage: str,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    data = encoded(name)
    damaged = {
        "half": data[: len(data) // 2],
        "header": header_only(data, name),
        "garbage": data + garbage(),
        "whole": data,
    }[damage]
    with signed_in(env) as alice:
        upload_id = upload(alice, name, damaged, content_type)
        answer = confirm(alice, upload_id)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert [k for k in object_keys(s3, bucket) if upload_id in k] == [keys.decided_key("uploads/", upload_id)]
    [event] = events(receiver, upload_id)
    assert event["type"] == "upload.rejected"
    assert isinstance(event["data"], dict) and event["data"]["code"] == code


def test_audio_longer_than_the_maximum_is_refused_as_too_long(app_env: dict[str, str]) -> None:
    with signed_in({**app_env, "SOUNDPOST_MAX_DURATION_SECONDS": "3"}) as alice:
        answer = confirm(alice, upload(alice, "opus", encoded("opus")))
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "too_long")


def test_the_minutes_quota_refuses_what_would_take_the_library_past_it(app_env: dict[str, str]) -> None:
    """Six seconds allowed: one four-second file fits, the second does not, whatever its bytes."""
    with signed_in({**app_env, "SOUNDPOST_USER_QUOTA_SECONDS": "6"}) as alice:
        first = confirm(alice, upload(alice, "aac", encoded("aac")))
        second = confirm(alice, upload(alice, "ogg", encoded("ogg")))
        listed = alice.get("/api/uploads").json()["uploads"]
    assert first.status_code == 200
    assert (second.status_code, second.json()["error"]["code"]) == (413, "duration_quota_exceeded")
    assert [u["id"] for u in listed] == [first.json()["id"]]


def _decoding_jobs() -> list[int]:
    """The processes the fork server forked for jobs running now (the app runs in this test process)."""
    server = forking._server
    if server is None or not server.alive:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server.process.pid:
                    found.append(int(entry.name))
    return found


async def promote_signalling_its_job(
    env: dict[str, str], upload_id: str, sent: signal.Signals
) -> tuple[ApiError, list[int]]:
    """Promote alice's upload, send ``sent`` to its decoding job once it runs; the error and the job's pids."""
    async with open_resources(load_settings({**env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1"})) as state:
        job = asyncio.create_task(promotion.promote_upload(state, ALICE, upload_id))
        while not (running := _decoding_jobs()):
            assert not job.done(), job
            await asyncio.sleep(0.01)
        for pid in running:
            os.kill(pid, sent)
        with pytest.raises(ApiError) as failed:
            await job
        return failed.value, running


def test_killing_the_worker_mid_job_fails_that_promotion_and_the_sweeper_promotes_it_once(
    env: dict[str, str], receiver: Receiver
) -> None:
    """SIGKILL to the job's process: 503 decoding_unavailable, nothing decided; one sweep promotes, a second does nothing."""
    with signed_in(env) as alice:
        upload_id = upload(alice, "opus", encoded("opus", seconds=600.0))  # ten minutes: seconds to decode

        error, killed = asyncio.run(promote_signalling_its_job(env, upload_id, signal.SIGKILL))
        assert (error.status, error.code, len(killed)) == (503, "decoding_unavailable", 1)
        assert [u["status"] for u in alice.get("/api/uploads").json()["uploads"]] == ["pending"]
        assert events(receiver, upload_id) == []
        first, second = run_sweep(env), run_sweep(env)
        assert first.returncode == 0 and "promoted 1" in first.stdout, first.stderr
        assert second.returncode == 0 and "promoted 0" in second.stdout, second.stderr
        [listed] = alice.get("/api/uploads").json()["uploads"]
    assert listed["status"] == "verified" and close_to(listed["durationSeconds"], 600.0)
    [event] = events(receiver, upload_id)
    assert event["type"] == "upload.confirmed"


def test_a_killed_fork_server_costs_its_jobs_only_and_is_started_again(env: dict[str, str]) -> None:
    """The fork server itself SIGKILLed mid-job: that promotion answers 503, the next one starts a new server."""
    with signed_in(env) as alice:
        slow = upload(alice, "opus", encoded("opus", seconds=600.0))
        quick = upload(alice, "wav", encoded("wav"))

        async def kill_server_mid_job() -> ApiError:
            async with open_resources(
                load_settings({**env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1"})
            ) as state:
                job = asyncio.create_task(promotion.promote_upload(state, ALICE, slow))
                while not _decoding_jobs():
                    assert not job.done(), job
                    await asyncio.sleep(0.01)
                assert forking._server is not None
                os.kill(forking._server.process.pid, signal.SIGKILL)
                with pytest.raises(ApiError) as failed:
                    await job
                return failed.value

        error = asyncio.run(kill_server_mid_job())
        assert (error.status, error.code) == (503, "decoding_unavailable")
        assert confirm(alice, quick).status_code == 200


def test_a_stalled_decoder_is_stopped_at_the_decode_timeout_and_the_sweeper_promotes_it_once(
    env: dict[str, str], receiver: Receiver
) -> None:
    """SIGSTOP to the job (a hung decoder): at SOUNDPOST_DECODE_TIMEOUT the promotion answers 503 and the job is killed."""
    hurried = {**env, "SOUNDPOST_DECODE_TIMEOUT": "5"}
    with signed_in(env) as alice:
        upload_id = upload(alice, "opus", encoded("opus", seconds=600.0))

        error, stalled = asyncio.run(promote_signalling_its_job(hurried, upload_id, signal.SIGSTOP))
        assert (error.status, error.code) == (503, "decoding_unavailable")
        for _ in range(100):  # the stopped job is killed, not left behind holding its memory
            if not any(Path(f"/proc/{pid}").exists() for pid in stalled):
                break
            time.sleep(0.05)
        assert not any(Path(f"/proc/{pid}").exists() for pid in stalled)
        assert [u["status"] for u in alice.get("/api/uploads").json()["uploads"]] == ["pending"]
        assert events(receiver, upload_id) == []
        first, second = run_sweep(env), run_sweep(env)
        assert first.returncode == 0 and "promoted 1" in first.stdout, first.stderr
        assert second.returncode == 0 and "promoted 0" in second.stdout, second.stderr
    [event] = events(receiver, upload_id)
    assert event["type"] == "upload.confirmed"


def test_uploads_promoted_before_uploads_were_decoded_get_their_facts_from_the_next_sweep(
    env: dict[str, str], s3: devstack.S3Endpoint, bucket: str
) -> None:
    """A library upload with no facts is decoded once by a sweep; one that does not decode is marked, not retried."""
    good, junk = keys.new_upload_id(), keys.new_upload_id()
    with admin(s3) as client:
        for upload_id, name, body in (
            (good, "take.wav", audio_samples.wav(2.0)),
            (junk, "junk.wav", b"<html>"),
        ):
            client.put_object(
                Bucket=bucket,
                Key=keys.library_key("uploads/", ALICE, upload_id, name),
                Body=body,
                ContentType="audio/wav",
            )
    with signed_in(env) as alice:
        before = {u["id"]: u for u in alice.get("/api/uploads").json()["uploads"]}
        first, second = run_sweep(env), run_sweep(env)
        after = {u["id"]: u for u in alice.get("/api/uploads").json()["uploads"]}
        peaks = alice.get(f"/api/uploads/{good}/peaks")
    assert before[good]["durationSeconds"] is None and before[junk]["durationSeconds"] is None
    assert first.returncode == 0 and "backfilled 1, undecodable 1" in first.stdout, first.stderr
    assert second.returncode == 0 and "backfilled 0, undecodable 0" in second.stdout, second.stderr
    assert close_to(after[good]["durationSeconds"], 2.0) and after[good]["audio"]["codec"] == "pcm_s16le"
    assert after[good]["renditionUrl"] == f"/api/uploads/{good}/rendition"  # renditions are on here
    assert peaks.status_code == 200 and peaks.json()["length"] > 0
    assert after[junk]["durationSeconds"] is None and after[junk]["status"] == "verified"
