"""The guard in front of every route: cross-site refusal and security headers."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guards:
    """Security headers on every response, and refusal of cross-site state-changing requests.

    Cross-site: SameSite=Lax already keeps the session cookie off cross-site
    POSTs; this is the second lock. Browsers send ``Sec-Fetch-Site`` and
    ``Origin`` on every unsafe request; clients that send neither (curl,
    servers) are not browsers and cannot carry a victim's cookie, so they pass.

    Headers: every response carries them (the refusal too); the page adds its own
    Content-Security-Policy. One layer does both, as each layer costs a wrapped
    ``send`` on every request.
    """

    def __init__(self, app: ASGIApp, *, allowed_origins: tuple[str, ...], https: bool) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)
        headers = {
            "x-content-type-options": "nosniff",
            "referrer-policy": "same-origin",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin",
            "content-security-policy": "frame-ancestors 'none'",
        }
        if https:
            headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
        self.headers = [(name.encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_defaults(message.get("headers", ()), self.headers)
            await send(message)

        if scope["method"] not in SAFE_METHODS and not self.same_site(scope):
            error = ApiError(403, "cross_site_request", "Cross-site requests are refused.")
            await error_response(Request(scope), error)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def same_site(self, scope: Scope) -> bool:
        site = origin = None
        for name, value in scope["headers"]:
            if name == b"origin" and origin is None:  # the first one counts, as with Headers.get
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site" and site is None:
                site = value.decode("latin-1")
        if origin is not None:
            return origin in self.allowed_origins
        return site in (None, "same-origin", "none")


def with_defaults(headers: Iterable[tuple[bytes, bytes]], defaults: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response's raw headers plus each default header it does not set itself."""
    headers = list(headers)
    present = {name.lower() for name, _ in headers}
    headers += [header for header in defaults if header[0] not in present]
    return headers
