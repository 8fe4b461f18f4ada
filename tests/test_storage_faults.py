"""S3 stopped, or hung, under the upload lifecycle routes: 503 storage_unavailable, presigning goes on, all recovers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from service import devstack
from service.core import keys
from tests.conftest import serve_app
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in
from tests.support.s3 import upload_id_of
from tests.support.servers import bound_socket, port_of

BODY = {"filename": "a.wav", "contentType": "audio/wav"}


def needs_s3(
    c: httpx.Client, upload_id: str, multipart: uppy.Multipart, parts: list[dict[str, object]]
) -> dict[str, Callable[[], httpx.Response]]:
    """Every route that has to talk to S3, as a browser would call it."""
    return {
        "list": lambda: c.get("/api/uploads"),
        "confirm": lambda: c.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(c)),
        "playback url": lambda: c.get(f"/api/uploads/{upload_id}/url"),
        "delete": lambda: c.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(c)),
        "multipart create": lambda: uppy.create(
            c, "b.wav", "audio/wav", {"name": "b.wav", "type": "audio/wav"}
        ),
        "multipart list parts": lambda: multipart.list_parts(),
        "multipart complete": lambda: multipart.complete(parts),
        "multipart abort": lambda: multipart.abort(),
    }


def presign_only(c: httpx.Client, multipart: uppy.Multipart) -> dict[str, Callable[[], httpx.Response]]:
    """Routes that only sign: local computation, no S3 call (the upload id is sealed to its key)."""
    return {
        "presigned url": lambda: c.post("/api/upload/presigned-url", json=BODY, headers=uppy.same_origin(c)),
        "uppy params": lambda: uppy.params(c, "c.wav", "audio/wav", 100),
        "multipart sign part": lambda: multipart.sign_part(2),
    }


@pytest.fixture
def stoppable_s3() -> Iterator[tuple[devstack.S3Endpoint, contextlib.ExitStack]]:
    """A moto server of this test's own, with a bucket; closing the stack stops the server."""
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(devstack.moto_s3())
        devstack.create_bucket(s3, "storage-faults", ["http://127.0.0.1"])
        yield s3, stack


def test_with_s3_stopped_lifecycle_routes_answer_503_presigning_goes_on_and_all_recovers(
    app_env: dict[str, str],
    stoppable_s3: tuple[devstack.S3Endpoint, contextlib.ExitStack],
) -> None:
    """Each S3 route says storage_unavailable (never 500) while S3 is down, and works again once it is back."""
    s3, running = stoppable_s3
    env = {
        **app_env,
        "SOUNDPOST_S3_ENDPOINT": s3.url,
        "SOUNDPOST_S3_BUCKET": "storage-faults",
        "SOUNDPOST_S3_CONNECT_TIMEOUT": "1",
    }
    with serve_app(env) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        upload_id = upload_id_of(uppy.simple_upload(c, "kept.wav", audio_samples.wav(0.5), "audio/wav"))
        multipart = uppy.Multipart.create(c, "parts.wav", "audio/wav")
        parts = [multipart.put_part(1, audio_samples.wav(0.5))]
        routes = needs_s3(c, upload_id, multipart, parts)

        running.close()  # S3 stops
        for name, call in routes.items():
            answer = call()
            assert (name, answer.status_code) == (name, 503), answer.text
            assert answer.json()["error"]["code"] == "storage_unavailable"
            assert answer.headers["retry-after"]
        for name, call in presign_only(c, multipart).items():
            assert (name, call().status_code) == (name, 200)

        with devstack.moto_s3(port_of(s3.url)):  # S3 is back on its port
            listed = routes["list"]()
            assert listed.status_code == 200 and [u["id"] for u in listed.json()["uploads"]] == [upload_id]
            confirmed = routes["confirm"]()
            assert confirmed.status_code == 200 and confirmed.json()["durationSeconds"] == 0.5
            assert routes["playback url"]().status_code == 200
            assert routes["multipart list parts"]().status_code == 200
            completed = routes["multipart complete"]()
            assert completed.status_code == 200, completed.text
            assert routes["delete"]().status_code == 204
            assert routes["multipart create"]().status_code == 200
            assert routes["list"]().json()["uploads"][0]["filename"] == "parts.wav"


@contextlib.contextmanager
def hung_s3() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers a byte."""
    sock = bound_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_hung_s3_answers_503_instead_of_holding_the_request(app_env: dict[str, str]) -> None:
    """With short configured timeouts, a silent S3 turns into storage_unavailable; presigning is unaffected."""
    with hung_s3() as endpoint:
        env = {
            **app_env,
            "SOUNDPOST_S3_ENDPOINT": endpoint,
            "SOUNDPOST_S3_CONNECT_TIMEOUT": "1",
            "SOUNDPOST_S3_READ_TIMEOUT": "1",
        }
        with serve_app(env) as url, httpx.Client(base_url=url, timeout=60) as c:
            assert sign_in(c, "fake", "alice").status_code == 303
            listed = c.get("/api/uploads")
            assert listed.status_code == 503
            assert listed.json()["error"]["code"] == "storage_unavailable"
            some = keys.new_upload_id()
            confirm = c.post(f"/api/uploads/{some}/confirm", headers=uppy.same_origin(c))
            assert confirm.json()["error"]["code"] == "storage_unavailable"
            ready = c.get("/readyz")
            assert ready.status_code == 503
            # no answer at all: the probe's own bounded wait, or readiness's overall deadline, ends first
            assert ready.json()["checks"]["s3"].startswith(("unreachable", "timed out"))
            assert (
                c.post("/api/upload/presigned-url", json=BODY, headers=uppy.same_origin(c)).status_code == 200
            )
