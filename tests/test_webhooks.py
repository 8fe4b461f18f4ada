"""The announcements: one signed upload.confirmed or upload.rejected per upload id, kept in the outbox until acknowledged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import httpx2
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.routing import Route

from service import devstack
from service.app import create_app
from service.core import keys
from service.settings import SettingsError, load_settings
from service.webhooks import WebhookSender
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in
from tests.support.s3 import object_keys
from tests.support.servers import bound_socket, serve_asgi
from tests.support.settings import MINIMAL_SETTINGS
from tests.support.sweep import run_sweep
from tests.support.webhooks import SECRET, Receiver, webhook_env

pytestmark = pytest.mark.peers  # real servers started by the tests themselves


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A peer that accepts the connection and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


@contextlib.contextmanager
def signed_in_app(app_env: dict[str, str], webhook_url: str, timeout: str = "5") -> Iterator[httpx.Client]:
    """The app with the webhook configured, and alice signed in to it."""
    env = webhook_env(app_env, webhook_url, timeout)
    with (
        serve_asgi(lambda base: create_app({**env, "SOUNDPOST_PUBLIC_URL": base})) as url,
        httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client,
    ):
        assert sign_in(client, "fake", "alice").status_code == 303
        yield client


def confirm_new_upload(client: httpx.Client) -> tuple[str, httpx.Response]:
    key = uppy.simple_upload(client, "call.wav", audio_samples.wav(1.25), "audio/wav")
    upload_id = key.split("/")[3]
    return upload_id, client.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(client))


def test_confirm_posts_a_signed_event_the_library_verifies(
    app_env: dict[str, str], receiver: Receiver, bucket: str
) -> None:
    """One delivery, signed per Standard Webhooks, carrying the upload's facts."""
    with signed_in_app(app_env, receiver.url) as alice:
        upload_id, answer = confirm_new_upload(alice)
    assert answer.status_code == 200, answer.text
    [event] = receiver.verified()
    assert event["type"] == "upload.confirmed"
    assert event["data"] == {
        "id": upload_id,
        "key": answer.json()["key"],
        "bucket": bucket,
        "user": keys.user_id("fake", "alice"),
        "size": answer.json()["size"],
        "contentType": "audio/wav",
        "durationSeconds": 1.25,
        "audio": {"codec": "pcm_s16le", "sampleRate": 8000, "channels": 1, "bitRate": 128000},
        "renditionKey": None,
        "rendition": None,
    }
    assert receiver.received[0][0]["webhook-id"] == f"msg_{upload_id}"


def test_a_tampered_event_fails_verification(app_env: dict[str, str], receiver: Receiver) -> None:
    """The signature covers the body: the receiver's verifier rejects a changed byte."""
    with signed_in_app(app_env, receiver.url) as alice:
        confirm_new_upload(alice)
    headers, body = receiver.received[0]
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook(SECRET).verify(body.replace(b"audio/wav", b"audio/xxx"), headers)


def test_a_receiver_that_fails_twice_then_succeeds_gets_the_event(
    app_env: dict[str, str], receiver: Receiver
) -> None:
    """Two 5xx answers are retried; the third delivery's 2xx lets the confirm succeed."""
    receiver.statuses = [500, 503]
    with signed_in_app(app_env, receiver.url) as alice:
        upload_id, answer = confirm_new_upload(alice)
    assert answer.status_code == 200, answer.text
    assert len(receiver.verified()) == 3
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {f"msg_{upload_id}"}


def test_a_receiver_that_never_answers_leaves_the_announcement_in_the_outbox(
    app_env: dict[str, str], silent_url: str, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Within the time bound nothing was acknowledged: the upload is promoted (200) and its message waits, durably."""
    with signed_in_app(app_env, silent_url, timeout="1") as alice:
        upload_id, answer = confirm_new_upload(alice)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "verified"
    assert keys.outbox_key("uploads/", upload_id) in object_keys(s3, bucket)


def test_a_receiver_that_was_down_is_announced_by_the_next_sweep_exactly_once(
    app_env: dict[str, str], receiver: Receiver, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Refused until the time bound; a later sweep delivers under the same webhook-id, and the one after sends nothing."""
    receiver.statuses = [500] * 1000
    with signed_in_app(app_env, receiver.url, timeout="1") as alice:
        upload_id, answer = confirm_new_upload(alice)
    assert answer.status_code == 200, answer.text
    refused = len(receiver.received)
    assert refused >= 1
    receiver.statuses.clear()
    env = webhook_env(app_env, receiver.url, timeout="5")
    first = run_sweep(env)
    assert first.returncode == 0, first.stderr
    assert "redelivered 1" in first.stdout
    assert len(receiver.received) == refused + 1
    second = run_sweep(env)
    assert second.returncode == 0, second.stderr
    assert "redelivered 0" in second.stdout
    assert len(receiver.received) == refused + 1
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {f"msg_{upload_id}"}
    assert receiver.verified()[-1]["type"] == "upload.confirmed"
    assert keys.outbox_key("uploads/", upload_id) not in object_keys(s3, bucket)


def test_confirm_does_not_wait_for_a_dead_receiver_and_the_announcement_arrives_once_it_is_back(
    app_env: dict[str, str], s3: devstack.S3Endpoint, bucket: str
) -> None:
    """SOUNDPOST_WEBHOOK_TIMEOUT=30 and a receiver that accepts connections but never answers:
    confirm still answers 200 far inside the timeout; once a real receiver listens at that
    address, the announcement arrives, once."""
    hung = bound_socket()  # accepts, never answers: a delivery waits for the whole timeout
    port = hung.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    env = {**webhook_env(app_env, url, timeout="30"), "SOUNDPOST_SWEEP_INTERVAL": "1"}
    with (
        serve_asgi(lambda base: create_app({**env, "SOUNDPOST_PUBLIC_URL": base})) as app_url,
        httpx.Client(base_url=app_url, follow_redirects=False, timeout=60) as alice,
    ):
        assert sign_in(alice, "fake", "alice").status_code == 303
        upload_id, answer = confirm_new_upload(alice)
        assert answer.status_code == 200, answer.text
        assert answer.elapsed.total_seconds() < 15  # not the 30 s the receiver is allowed
        hung.close()  # the receiver comes back at the same address
        hooks = Receiver()
        with serve_asgi(
            lambda _: Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])]), port=port
        ):
            for _ in range(600):  # the holder's retries (or, were they spent, the sweeper) reach it
                if hooks.received and keys.outbox_key("uploads/", upload_id) not in object_keys(s3, bucket):
                    break
                time.sleep(0.1)
            time.sleep(2)  # two more sweeps: nothing is announced again
    [event] = hooks.verified()
    assert event["type"] == "upload.confirmed"
    assert hooks.received[0][0]["webhook-id"] == f"msg_{upload_id}"
    assert keys.outbox_key("uploads/", upload_id) not in object_keys(s3, bucket)


def test_a_refused_upload_is_announced_as_rejected_never_as_confirmed(
    app_env: dict[str, str], receiver: Receiver, bucket: str
) -> None:
    """Only audio that passed its checks is announced as confirmed; a refusal is announced once, with its reason."""
    with signed_in_app(app_env, receiver.url) as alice:
        key = uppy.simple_upload(alice, "x.wav", audio_samples.not_audio(), "audio/wav")
        upload_id = key.split("/")[3]
        answer = alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice))
        again = alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice))
    assert answer.status_code == again.status_code == 422
    [event] = receiver.verified()
    assert event["type"] == "upload.rejected"
    assert event["data"] == {
        "id": upload_id,
        "key": key,
        "bucket": bucket,
        "user": keys.user_id("fake", "alice"),
        "size": len(audio_samples.not_audio()),
        "contentType": "audio/wav",
        "code": "not_audio",
        "detail": answer.json()["error"]["detail"],
    }
    assert receiver.received[0][0]["webhook-id"] == f"msg_{upload_id}"


BASE = MINIMAL_SETTINGS


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"SOUNDPOST_WEBHOOK_URL": "https://hooks.example/x"}, "WEBHOOK_SECRET is required"),
        ({"SOUNDPOST_WEBHOOK_SECRET": "not-a-secret"}, "WEBHOOK_SECRET must be whsec_"),
        ({"SOUNDPOST_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"short").decode()}, "at least 24 bytes"),
        ({"SOUNDPOST_WEBHOOK_URL": "ftp://hooks.example"}, "WEBHOOK_URL must be an http(s) URL"),
        ({"SOUNDPOST_WEBHOOK_TIMEOUT": "0"}, "WEBHOOK_TIMEOUT must be between 1 and 60"),
    ],
)
def test_webhook_settings_are_validated_at_start_up(extra: dict[str, str], problem: str) -> None:
    """A half-configured or malformed webhook stops start-up, naming the setting."""
    with pytest.raises(SettingsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_settings({**BASE, **extra})


def test_a_valid_webhook_configuration_loads() -> None:
    """URL and secret together are accepted, the secret kept out of reprs."""
    settings = load_settings(
        {**BASE, "SOUNDPOST_WEBHOOK_URL": "https://hooks.example/x", "SOUNDPOST_WEBHOOK_SECRET": SECRET}
    )
    assert settings.webhook_url == "https://hooks.example/x"
    assert SECRET not in repr(settings)


def test_a_failure_inside_the_http_client_is_retried_like_a_network_error() -> None:
    """The client itself raising (an HTTP library's bug on a socket closed mid-connect) costs one attempt,
    not the announcement: the next attempt is made and its 2xx acknowledges it."""
    calls: list[int] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        if len(calls) == 1:
            raise AttributeError("'NoneType' object has no attribute 'getpeername'")
        return httpx2.Response(204)

    async def deliver() -> bool:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
            sender = WebhookSender(client, "http://receiver.invalid/hook", SECRET, time_limit=10)
            return await sender.deliver("msg_1", "{}")

    assert asyncio.run(deliver()) is True
    assert len(calls) == 2
