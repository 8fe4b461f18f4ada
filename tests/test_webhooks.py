"""The completion webhook: a signed upload.confirmed event per successful confirm, acknowledged or retried."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import keys
from service.app import create_app
from service.settings import SettingsError, load_settings
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in
from tests.support.servers import serve_asgi
from tests.support.settings import MINIMAL_SETTINGS

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that answers the statuses it is given, then 204 for ever."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def hook(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 204)

    def verified(self) -> list[dict[str, object]]:
        """Every delivery, checked with the standardwebhooks library's own verifier."""
        return [Webhook(SECRET).verify(body, headers) for headers, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    with serve_asgi(lambda _: Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])])) as url:
        hooks.url = f"{url}/hook"
        yield hooks


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
    env = {
        **app_env,
        "SOUNDPOST_WEBHOOK_URL": webhook_url,
        "SOUNDPOST_WEBHOOK_SECRET": SECRET,
        "SOUNDPOST_WEBHOOK_TIMEOUT": timeout,
    }
    with (
        serve_asgi(lambda base: create_app({**env, "SOUNDPOST_PUBLIC_URL": base})) as url,
        httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client,
    ):
        assert sign_in(client, "fake", "alice").status_code == 303
        yield client


def confirm_new_upload(client: httpx.Client) -> tuple[str, httpx.Response]:
    key = uppy.simple_upload(client, "call.wav", audio_samples.wav(1.25), "audio/wav")
    upload_id = key.split("/")[2]
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


def test_a_receiver_that_never_answers_makes_confirm_502(app_env: dict[str, str], silent_url: str) -> None:
    """Within the time bound nothing was acknowledged: the confirm says delivery failed, so the client retries."""
    with signed_in_app(app_env, silent_url, timeout="1") as alice:
        _, answer = confirm_new_upload(alice)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "webhook_delivery_failed"


def test_a_receiver_that_always_fails_makes_confirm_502_and_a_retry_redelivers(
    app_env: dict[str, str], receiver: Receiver
) -> None:
    """Refused until the time bound, then accepted on the client's retry, under the same webhook-id."""
    receiver.statuses = [500] * 1000
    with signed_in_app(app_env, receiver.url, timeout="1") as alice:
        upload_id, answer = confirm_new_upload(alice)
        assert answer.status_code == 502
        receiver.statuses.clear()
        retried = alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice))
    assert retried.status_code == 200
    assert len(receiver.received) >= 2
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {f"msg_{upload_id}"}


def test_a_failed_confirm_sends_no_event(app_env: dict[str, str], receiver: Receiver) -> None:
    """Only audio that passed its checks is announced."""
    with signed_in_app(app_env, receiver.url) as alice:
        key = uppy.simple_upload(alice, "x.wav", audio_samples.not_audio(), "audio/wav")
        answer = alice.post(f"/api/uploads/{key.split('/')[2]}/confirm", headers=uppy.same_origin(alice))
    assert answer.status_code == 422
    assert receiver.received == []


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
