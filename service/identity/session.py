"""The signed session cookie: Starlette's format, read cheaply when a browser sends it again.

The cookie's format, its signature (itsdangerous' ``TimestampSigner`` over base64
JSON), its flags and the ``Session`` object are all Starlette's
``SessionMiddleware``'s, so cookies pass between the two both ways
(tests/test_session_middleware.py). What changes is the read: a signed-in browser
sends the same cookie on every request until the session changes, and parsing
the Cookie header, checking the HMAC and decoding base64 was a large part of an
API call. A session cookie value that verified once is remembered (a bounded
table, per process) with its signing time; its age is still checked against the
lifetime on every request, and every request still gets a fresh ``Session`` of
its own. The table is keyed on the session cookie alone (``name=value``, which
is the whole Cookie header when a browser sends only ours, so that common case
needs no parsing), never on a header with other cookies in it, and only values
we signed are kept: its memory does not depend on what else a client sends.

This is not a middleware of its own: ``service.http.edge.Edge`` loads the session
before the routes run and adds ``headers_for`` to the answer, in the one layer
every request passes through.
"""

from __future__ import annotations

import json
import time
from base64 import b64decode, b64encode
from typing import Any, Literal

import itsdangerous
import msgspec
from itsdangerous.exc import BadSignature
from starlette.middleware.sessions import Session
from starlette.requests import cookie_parser

CLEARED_COOKIE_EXPIRES = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "
VARY_COOKIE = (b"vary", b"Cookie")


class CookieSessions:
    """Sessions kept in a signed cookie, with ``SessionMiddleware``'s parameters and output."""

    REMEMBERED = 1024  # distinct session cookies kept; beyond that, the oldest is verified again
    MAX_REMEMBERED_VALUE = 4096  # a value we signed is far smaller; a larger one is never kept

    def __init__(
        self,
        secret_key: str,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
    ) -> None:
        self.signer = itsdangerous.TimestampSigner(secret_key)
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        self.security_flags = "httponly; samesite=" + same_site + ("; secure" if https_only else "")
        self.remembered: dict[bytes, tuple[int, bytes]] = {}  # b"name=value" -> (signed at, JSON)
        self.cookie_name = session_cookie.encode("latin-1")
        self.cookie_prefix = self.cookie_name + b"="

    def cookie_value(self, header: bytes) -> bytes | None:
        """The session cookie's value in a Cookie header, as ``cookie_parser`` reads it (the last one counts)."""
        if header.startswith(self.cookie_prefix) and b";" not in header:  # a browser sending only ours
            value: bytes | None = header[len(self.cookie_prefix) :].strip()
        else:
            value = None
            for chunk in header.split(b";"):
                key, equals, rest = chunk.partition(b"=")
                if equals and key.strip() == self.cookie_name:
                    value = rest.strip()
        if value is not None and (b'"' in value or b"\\" in value):  # quoted: cookie_parser unquotes; let it
            parsed = cookie_parser(header.decode("latin-1")).get(self.session_cookie)
            return None if parsed is None else parsed.encode("latin-1")
        return value

    def load(self, header: bytes | None) -> tuple[Session, bool]:
        """The request's session, and whether it came from a valid cookie."""
        if header is None:
            return Session(), False
        # Keys are "name=value" for a value that verified: a browser sending only our cookie sends a key.
        key = header
        known = self.remembered.get(key)
        if known is None:
            value = self.cookie_value(header)
            if value is None:
                return Session(), False
            key = self.cookie_prefix + value
            known = self.remembered.get(key)
        if known is not None:
            signed_at, payload = known
            if self.fresh(signed_at):
                return Session(decode_payload(payload)), True
            del self.remembered[key]
            return Session(), False
        value = key[len(self.cookie_prefix) :]  # not remembered: here key is always name=value
        try:
            data, signed = self.signer.unsign(value, max_age=self.max_age, return_timestamp=True)
        except BadSignature:
            return Session(), False
        payload = b64decode(data)
        session = Session(decode_payload(payload))
        if len(value) <= self.MAX_REMEMBERED_VALUE:
            self.remember(key, int(signed.timestamp()), payload)
        return session, True

    def fresh(self, signed_at: int) -> bool:
        """The same age rule as ``TimestampSigner.unsign``: not from the future, not past max_age."""
        age = int(time.time()) - signed_at
        return age >= 0 and (self.max_age is None or age <= self.max_age)

    def remember(self, key: bytes, signed_at: int, payload: bytes) -> None:
        if len(self.remembered) >= self.REMEMBERED:
            del self.remembered[next(iter(self.remembered))]  # the oldest entry goes first
        self.remembered[key] = (signed_at, payload)

    def add_headers(self, headers: list[tuple[bytes, bytes]], session: Session, had_session: bool) -> None:
        """What SessionMiddleware adds to an answer: ``Vary: Cookie`` if the session was read, the cookie if changed."""
        if session.accessed:
            add_vary_cookie(headers)
        cookie = self.set_cookie(session, had_session)
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode("latin-1")))

    def set_cookie(self, session: Session, had_session: bool) -> str | None:
        """The Set-Cookie value SessionMiddleware sends: the new session, a cleared one, or none."""
        if not session.modified:
            return None
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        if session:
            data = self.signer.sign(b64encode(json.dumps(session).encode("utf-8"))).decode("utf-8")
            return f"{self.session_cookie}={data}; path={self.path}; {max_age}{self.security_flags}"
        if had_session:
            return (
                f"{self.session_cookie}=null; path={self.path}; {CLEARED_COOKIE_EXPIRES}{self.security_flags}"
            )
        return None


def add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    """``MutableHeaders.add_vary_header("Cookie")`` on raw headers: append to a Vary the answer has, or add one."""
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            headers[index] = (b"vary", value + b", Cookie")
            return
    headers.append(VARY_COOKIE)


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The session's JSON: msgspec gives the same dicts as json.loads, several times faster."""
    try:
        data: dict[str, Any] = msgspec.json.decode(payload)
    except msgspec.DecodeError:  # JSON that only json.loads reads (NaN): the slow path, same answer
        data = json.loads(payload)
    return data
