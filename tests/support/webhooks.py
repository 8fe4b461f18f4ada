"""A real webhook receiver on 127.0.0.1 that checks each delivery with the Standard Webhooks verifier."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_asgi

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def webhook_env(app_env: dict[str, str], webhook_url: str, timeout: str = "5") -> dict[str, str]:
    """The app's settings with its announcements signed with SECRET and sent to ``webhook_url``."""
    return {
        **app_env,
        "SOUNDPOST_WEBHOOK_URL": webhook_url,
        "SOUNDPOST_WEBHOOK_SECRET": SECRET,
        "SOUNDPOST_WEBHOOK_TIMEOUT": timeout,
    }


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

    def about(self, upload_id: str) -> list[dict[str, Any]]:
        """The verified deliveries of one upload's announcement (``webhook-id: msg_<id>``), as received so far."""
        return [
            event
            for event, (headers, _) in zip(self.verified(), self.received, strict=True)
            if headers["webhook-id"] == f"msg_{upload_id}"
        ]


@contextlib.contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """A ``Receiver`` served at ``receiver.url`` for the length of the block."""
    hooks = Receiver()
    with serve_asgi(lambda _: Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])])) as url:
        hooks.url = f"{url}/hook"
        yield hooks
