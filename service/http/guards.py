"""Cross-site refusal and the security headers every answer carries.

Cross-site: SameSite=Lax already keeps the session cookie off cross-site POSTs;
this is the second lock. Browsers send ``Sec-Fetch-Site`` and ``Origin`` on every
unsafe request; clients that send neither (curl, servers) are not browsers and
cannot carry a victim's cookie, so they pass.

Headers: every answer carries nosniff and ``frame-ancestors 'none'`` (and HSTS over
https), the refusal too. JSON answers also say ``Cache-Control: no-store``: they
carry signed upload credentials and personal data, which no cache should keep.
Documents (the page, static files, HTML errors) also get the headers that only
documents act on: Referrer-Policy, X-Frame-Options for old browsers, and
Cross-Origin-Opener-Policy. Sending those on JSON would protect nothing and costs
on every API call. The page sets its own Content-Security-Policy, which the
default does not replace. ``service.http.edge.Edge`` applies all this, in the one
layer every request passes through.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from service.errors import ApiError
from service.http.handlers import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCHES = frozenset({None, b"same-origin", b"none"})


class SiteGuard:
    """Which requests come from our own pages, and the headers every answer gets."""

    def __init__(self, allowed_origins: Iterable[str], *, https: bool) -> None:
        self.allowed_origins = frozenset(origin.encode("latin-1") for origin in allowed_origins)
        every = {"x-content-type-options": "nosniff", "content-security-policy": "frame-ancestors 'none'"}
        if https:
            every["strict-transport-security"] = "max-age=31536000; includeSubDomains"
        self.json_headers = raw_headers({**every, "cache-control": "no-store"})
        self.document_headers = raw_headers(
            {
                **every,
                "referrer-policy": "same-origin",
                "x-frame-options": "DENY",
                "cross-origin-opener-policy": "same-origin",
            }
        )
        self.names = frozenset(name for name, _ in self.json_headers + self.document_headers)

    def allows(self, method: str, origin: bytes | None, fetch_site: bytes | None) -> bool:
        """Safe methods always; others only from an allowed Origin, or a same-origin (or no) Sec-Fetch-Site."""
        if method in SAFE_METHODS:
            return True
        if origin is not None:
            return origin in self.allowed_origins
        return fetch_site in SAME_SITE_FETCHES

    def refusal(self, request: Request) -> Response:
        return error_response(
            request, ApiError(403, "cross_site_request", "Cross-site requests are refused.")
        )

    def with_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The answer's raw headers plus each security header for its kind that it does not set itself."""
        headers = list(headers)
        present = set()
        is_json = False
        for name, value in headers:  # ASGI header names are lowercase
            present.add(name)
            if name == b"content-type":
                is_json = value.startswith(b"application/json")
        defaults = self.json_headers if is_json else self.document_headers
        if present.isdisjoint(self.names):
            headers += defaults  # the usual case: the answer sets none of them
        else:
            headers += [header for header in defaults if header[0] not in present]
        return headers


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]
