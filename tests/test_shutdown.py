"""Graceful shutdown of `soundpost serve`: on SIGTERM, in-flight requests finish and new connections are refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import devstack
from service.core import keys
from tests.support import audio_samples, uppy
from tests.support.flows import sign_in
from tests.support.servers import serve_asgi


@dataclass
class HeldReceiver:
    """A webhook receiver that holds every delivery until the test lets it answer 204."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    bodies: list[dict[str, object]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.bodies.append(json.loads(await request.body()))
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, 120)
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])


@contextlib.contextmanager
def held_receiver() -> Iterator[tuple[HeldReceiver, str]]:
    receiver = HeldReceiver()
    try:
        with serve_asgi(lambda _: receiver.app()) as url:
            yield receiver, f"{url}/hook"
    finally:
        receiver.release.set()


def refuses_connections(port: int, within: float = 30) -> bool:
    """Whether connecting to the port is refused (polling, as the signal is handled asynchronously)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_lets_an_announcement_under_way_finish_refuses_new_connections_and_exits_0(
    app_env: dict[str, str],
) -> None:
    """Confirm answers while its announcement waits on the receiver; SIGTERM closes the listener,
    lets that delivery finish, and the process exits 0."""
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with held_receiver() as (receiver, hook_url):
        env = {
            **app_env,
            "SOUNDPOST_WEBHOOK_URL": hook_url,
            "SOUNDPOST_WEBHOOK_SECRET": secret,
            "SOUNDPOST_WEBHOOK_TIMEOUT": "60",
        }
        with devstack.soundpost_serve(env) as server, httpx.Client(base_url=server.url, timeout=120) as c:
            assert sign_in(c, "fake", "alice").status_code == 303
            key = uppy.simple_upload(c, "last.wav", audio_samples.wav(1.0), "audio/wav")
            parsed = keys.parse_key("uploads/", key)
            assert parsed is not None
            upload_id = parsed[1]

            answer = c.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(c))
            assert answer.status_code == 200, answer.text  # the receiver has not answered
            assert (answer.json()["id"], answer.json()["durationSeconds"]) == (upload_id, 1.0)
            assert receiver.arrived.wait(60), "the announcement never reached the webhook receiver"
            server.process.terminate()  # SIGTERM

            assert refuses_connections(int(server.url.rsplit(":", 1)[1]))
            receiver.release.set()
            assert server.process.wait(timeout=60) == 0, server.log()
            assert receiver.bodies[0]["data"]["id"] == upload_id  # type: ignore[index]
            assert "not announced yet" not in server.log()  # delivered, not cut short by the exit
