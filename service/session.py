"""The signed session cookie: Starlette's SessionMiddleware, reading a cookie it has seen before cheaply.

The cookie format, its signature (itsdangerous' ``TimestampSigner`` over base64
JSON), its flags and the ``Session`` object are all Starlette's, so cookies pass
between this class and ``SessionMiddleware`` both ways. What changes is the read:
a signed-in browser sends the same cookie on every request until the session
changes, and parsing the Cookie header, checking the HMAC and decoding base64 was
a large part of an API call. A Cookie header whose session cookie verified once
is remembered (a bounded table, per process) with its signing time; its age is
still checked against the lifetime on every request, and every request still
gets a fresh ``Session`` of its own.
"""

from __future__ import annotations

import json
import time
from base64 import b64decode, b64encode
from typing import Any

import msgspec
from itsdangerous.exc import BadSignature
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session, SessionMiddleware
from starlette.requests import cookie_parser
from starlette.types import Message, Receive, Scope, Send

CLEARED_COOKIE_EXPIRES = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "


class SessionCookies(SessionMiddleware):
    """``SessionMiddleware`` that remembers the Cookie headers it has verified."""

    REMEMBERED = 1024  # distinct Cookie headers kept (under 1 KB each); beyond that, the oldest is verified again

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.remembered: dict[bytes, tuple[int, bytes]] = {}  # Cookie header -> (signed at, JSON)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        session, had_session = self.load(cookie_header(scope))
        scope["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", ())))
                if session.accessed:
                    headers.add_vary_header("Cookie")
                cookie = self.set_cookie(session, had_session)
                if cookie is not None:
                    headers.append("set-cookie", cookie)
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def load(self, header: bytes | None) -> tuple[Session, bool]:
        """The request's session, and whether it came from a valid cookie."""
        if header is None:
            return Session(), False
        known = self.remembered.get(header)
        if known is not None:
            signed_at, payload = known
            if self.fresh(signed_at):
                return Session(decode_payload(payload)), True
            del self.remembered[header]
            return Session(), False
        value = cookie_parser(header.decode("latin-1")).get(self.session_cookie)
        if value is None:
            return Session(), False
        try:
            data, signed = self.signer.unsign(value.encode("utf-8"), max_age=self.max_age, return_timestamp=True)
        except BadSignature:
            return Session(), False
        payload = b64decode(data)
        session = Session(decode_payload(payload))
        self.remember(header, int(signed.timestamp()), payload)
        return session, True

    def fresh(self, signed_at: int) -> bool:
        """The same age rule as ``TimestampSigner.unsign``: not from the future, not past max_age."""
        age = int(time.time()) - signed_at
        return age >= 0 and (self.max_age is None or age <= self.max_age)

    def remember(self, header: bytes, signed_at: int, payload: bytes) -> None:
        if len(self.remembered) >= self.REMEMBERED:
            del self.remembered[next(iter(self.remembered))]  # the oldest entry goes first
        self.remembered[header] = (signed_at, payload)

    def set_cookie(self, session: Session, had_session: bool) -> str | None:
        """The Set-Cookie value SessionMiddleware sends: the new session, a cleared one, or none."""
        if not session.modified:
            return None
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        if session:
            data = self.signer.sign(b64encode(json.dumps(session).encode("utf-8"))).decode("utf-8")
            return f"{self.session_cookie}={data}; path={self.path}; {max_age}{self.security_flags}"
        if had_session:
            return f"{self.session_cookie}=null; path={self.path}; {CLEARED_COOKIE_EXPIRES}{self.security_flags}"
        return None


def decode_payload(payload: bytes) -> dict[str, Any]:
    """The session's JSON: msgspec gives the same dicts as json.loads, several times faster."""
    try:
        data: dict[str, Any] = msgspec.json.decode(payload)
    except msgspec.DecodeError:  # JSON that only json.loads reads (NaN): the slow path, same answer
        data = json.loads(payload)
    return data


def cookie_header(scope: Scope) -> bytes | None:
    """The first Cookie header, as Starlette's ``Request.cookies`` reads it."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            return bytes(value)
    return None

