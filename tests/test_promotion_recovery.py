"""A promoter that dies between its claim and its announcement leaves what the sweeper needs to finish, once.

The staging object is deleted last, after the id's record says "announced", so while a
promotion is under way it marks the upload: a sweep finds it, meets the dead holder's
stale lease, takes it over and announces. An announcement whose delivery failed is
queued in the outbox instead; one queued by a version that kept the pending record in
the outbox itself is adopted as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import devstack
from service.core import keys
from service.lifecycle import promotion, sweeper
from service.settings import load_settings
from tests.conftest import signed_in
from tests.support import audio_samples, uppy
from tests.support.s3 import admin, object_keys
from tests.support.servers import serve_asgi
from tests.support.sweep import run_sweep, sweep_twice
from tests.support.webhooks import Receiver

ALICE = keys.user_id("fake", "alice")
HOLD_SECONDS = 60  # bounds on the test, not measurements: the promoter is killed long before
ARRIVAL_SECONDS = 60
DAY = 86400


@pytest.fixture
def env(sweeping_env: dict[str, str]) -> dict[str, str]:
    """Announcing to ``receiver``, with no grace period: a sweep promotes at once."""
    return sweeping_env


async def disconnected(request: Request) -> None:
    """Return once the sender hung up (its body read and ignored on the way)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@contextlib.contextmanager
def receiver_that_never_answers() -> Iterator[tuple[str, threading.Event]]:
    """A webhook URL that takes a delivery and holds it open; the event is set once one arrived."""
    arrived = threading.Event()

    async def hold(request: Request) -> Response:
        arrived.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected(request), HOLD_SECONDS)
        return Response(status_code=503)

    with serve_asgi(lambda _: Starlette(routes=[Route("/hook", hold, methods=["POST"])])) as url:
        yield f"{url}/hook", arrived


def holding(env: dict[str, str], hook: str) -> dict[str, str]:
    """A sweep's environment announcing to ``hook`` and waiting for it longer than the test lasts."""
    return {
        **os.environ,
        **env,
        "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1",
        "SOUNDPOST_WEBHOOK_URL": hook,
        "SOUNDPOST_WEBHOOK_TIMEOUT": str(HOLD_SECONDS),
    }


@contextlib.contextmanager
def sweep_stuck_announcing(env: dict[str, str]) -> Iterator[None]:
    """A ``soundpost sweep`` process held at its first announcement for the block, then killed with SIGKILL."""
    with receiver_that_never_answers() as (hook, arrived):
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "sweep"],
            env=holding(env, hook),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert arrived.wait(ARRIVAL_SECONDS), "the sweep never reached the announcement"
            yield
        finally:
            process.kill()
            process.wait(timeout=30)


def record_of(s3: devstack.S3Endpoint, bucket: str, upload_id: str) -> dict[str, Any]:
    with admin(s3) as client:
        body = client.get_object(Bucket=bucket, Key=keys.decided_key("uploads/", upload_id))["Body"].read()
    record: dict[str, Any] = json.loads(body)
    return record


def put_json(s3: devstack.S3Endpoint, bucket: str, key: str, record: dict[str, Any]) -> None:
    with admin(s3) as client:
        client.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(record).encode(), ContentType="application/json"
        )


def lease_runs_out(s3: devstack.S3Endpoint, bucket: str, upload_id: str) -> None:
    """What waiting out the dead holder's lease would do (written here instead of waited for)."""
    record = record_of(s3, bucket, upload_id)
    put_json(s3, bucket, keys.decided_key("uploads/", upload_id), {**record, "lease_until": 0.0})


def staged_memo(env: dict[str, str]) -> tuple[str, str]:
    """(staging key, upload id) of a second of WAV alice uploaded and nobody promoted yet."""
    with signed_in(env) as alice:
        key = uppy.simple_upload(alice, "memo.wav", audio_samples.wav(1.0), "audio/wav")
    return key, key.split("/")[-2]


def of_upload(s3: devstack.S3Endpoint, bucket: str, upload_id: str) -> list[str]:
    return [k for k in object_keys(s3, bucket) if upload_id in k]


def test_a_sweep_killed_while_announcing_leaves_the_upload_marked_and_the_next_sweep_announces_it_once(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """kill -9 mid-delivery: library copy, pending record and staging object stay; one sweep later, one announcement."""
    key, upload_id = staged_memo(env)
    library = keys.library_key("uploads/", ALICE, upload_id, "memo.wav")
    with sweep_stuck_announcing(env):
        pass  # and killed
    assert key in object_keys(s3, bucket) and library in object_keys(s3, bucket)
    assert record_of(s3, bucket, upload_id)["pending"] is True
    assert not [k for k in object_keys(s3, bucket) if "/outbox/" in k]

    lease_runs_out(s3, bucket, upload_id)
    first, again = sweep_twice(env)
    assert "promoted 1" in first
    assert "promoted 0" in again and "redelivered 0" in again

    [event] = receiver.about(upload_id)
    assert event["type"] == "upload.confirmed" and event["data"]["key"] == library
    assert record_of(s3, bucket, upload_id)["pending"] is False
    assert key not in object_keys(s3, bucket)
    with signed_in(env) as alice:
        assert [(u["id"], u["status"]) for u in alice.get("/api/uploads").json()["uploads"]] == [
            (upload_id, "verified")
        ]


def test_a_holder_alive_and_announcing_is_left_alone_by_a_sweep(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """A sweep meeting a fresh lease answers from the record and deletes nothing the holder still needs."""
    key, upload_id = staged_memo(env)
    with sweep_stuck_announcing(env):
        meanwhile = run_sweep(env)
    assert meanwhile.returncode == 0, meanwhile.stderr
    assert "promoted 1" in meanwhile.stdout  # answered from the record: the upload is in the library
    assert receiver.about(upload_id) == []
    assert key in object_keys(s3, bucket)
    assert record_of(s3, bucket, upload_id)["pending"] is True


def test_an_announcement_queued_by_the_previous_record_layout_is_adopted_and_delivered_once(
    env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """The outbox entry held the whole pending record then: a sweep makes it the id's record and announces it."""
    receiver.statuses = [500] * 1000  # refused until confirm's time bound: queued for the sweeper
    with signed_in({**env, "SOUNDPOST_WEBHOOK_TIMEOUT": "1"}) as alice:
        key = uppy.simple_upload(alice, "memo.wav", audio_samples.wav(1.0), "audio/wav")
        upload_id = key.split("/")[-2]
        assert (
            alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice)).status_code
            == 200
        )
    outbox = keys.outbox_key("uploads/", upload_id)  # the app waited for its announcement before stopping
    assert outbox in object_keys(s3, bucket)
    legacy = {name: value for name, value in record_of(s3, bucket, upload_id).items() if name != "pending"}
    put_json(s3, bucket, outbox, {**legacy, "lease_until": 0.0})
    with admin(s3) as client:
        client.delete_object(Bucket=bucket, Key=keys.decided_key("uploads/", upload_id))
    receiver.received.clear()
    receiver.statuses = []

    swept, again = sweep_twice(env)
    assert "redelivered 1" in swept
    assert "redelivered 0" in again
    [event] = receiver.about(upload_id)
    assert event["type"] == "upload.confirmed"
    assert record_of(s3, bucket, upload_id)["pending"] is False
    assert of_upload(s3, bucket, upload_id) == [
        keys.decided_key("uploads/", upload_id),
        *sorted(k for k in of_upload(s3, bucket, upload_id) if k.startswith("uploads/library/")),
    ]


def test_a_promoter_killed_longer_ago_than_the_staging_lifetime_is_finished_not_discarded(
    env: dict[str, str],
    receiver: Receiver,
    s3: devstack.S3Endpoint,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A day and a half later (no sweep ran meanwhile), the staging object is past its lifetime, yet it still
    marks the dead holder's promotion: the sweep announces it once instead of deleting it as a leftover."""
    key, upload_id = staged_memo(env)
    with sweep_stuck_announcing(env):
        pass  # and killed
    later = time.time() + 1.5 * DAY  # past the default lifetime (a day), short of forgetting records (two)
    for module in (promotion, sweeper):
        monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: later))

    async def one_pass() -> sweeper.SweepReport:
        settings = load_settings({**env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1"})
        async with sweeper.open_resources(settings) as state:
            return await sweeper.sweep(state)

    first = asyncio.run(one_pass())
    assert (first.promoted, first.expired) == (1, 0)
    again = asyncio.run(one_pass())
    assert (again.promoted, again.redelivered, again.expired) == (0, 0, 0)
    [event] = receiver.about(upload_id)
    assert event["type"] == "upload.confirmed"
    assert record_of(s3, bucket, upload_id)["pending"] is False
    assert key not in object_keys(s3, bucket)
