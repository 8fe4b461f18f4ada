"""Request guards that apply to every route: cross-site refusal and security headers."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossSiteGuard:
    """Refuse state-changing requests that a browser says come from another site.

    SameSite=Lax already keeps the session cookie off cross-site POSTs; this is
    the second lock. Browsers send ``Sec-Fetch-Site`` and ``Origin`` on every
    unsafe request; clients that send neither (curl, servers) are not browsers
    and cannot carry a victim's cookie, so they pass.
    """

    def __init__(self, app: ASGIApp, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            if not self.allowed(headers):
                error = ApiError(403, "cross_site_request", "Cross-site requests are refused.")
                await error_response(Request(scope), error)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allowed(self, headers: Headers) -> bool:
        site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        if origin is not None:
            return origin in self.allowed_origins
        return site in (None, "same-origin", "none")


class SecurityHeaders:
    """Headers every response carries; the page adds its own Content-Security-Policy."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = {
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
        }
        if https:
            self.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
            await send(message)

        await self.app(scope, receive, send_with_headers)
