"""The one ASGI layer in front of the routes: request id, cross-site refusal, session, headers, metrics, errors.

Each of these used to be a middleware of its own. Every layer wraps ``send`` and
re-reads the request headers, and on the presign path those layers cost more
than signing did; so the concerns stay in their modules (``observability``,
``guards``, ``session``, ``errors``) and this layer calls them in order, reading
the request headers once and building the answer's headers once.

Given the app's ``ErrorHandlers`` (``service.app.Soundpost`` does this), it also
answers exceptions in place of Starlette's ServerErrorMiddleware and
ExceptionMiddleware, which would each wrap ``send`` again: it already sees
every answer start. Error answers then carry the security headers and the
request id like any other. An exception answered in full is not raised again:
its handler has logged it (once), and the keep-alive connection stays usable.
"""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.guards import SiteGuard
from service.http.handlers import ErrorHandlers
from service.identity.session import CookieSessions
from service.observability import CLIENT_CLOSED, REQUEST_ID, RequestRecorder, request_id_from


class Edge:
    """Runs every HTTP request through the guard, session, recorder and error handlers, with one wrapped ``send``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: SiteGuard,
        sessions: CookieSessions,
        recorder: RequestRecorder,
        errors: ErrorHandlers | None = None,
    ) -> None:
        self.app = app
        self.guard = guard
        self.sessions = sessions
        self.recorder = recorder
        self.errors = errors  # None: exceptions pass through, to the error layers of a plain Starlette app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id_header = cookie = origin = fetch_site = None
        for name, value in scope["headers"]:  # the first of each counts, as with Headers.get
            if name == b"cookie":
                cookie = value if cookie is None else cookie
            elif name == b"origin":
                origin = value if origin is None else origin
            elif name == b"sec-fetch-site":
                fetch_site = value if fetch_site is None else fetch_site
            elif name == b"x-request-id":
                request_id_header = value if request_id_header is None else request_id_header
        request_id = request_id_from(request_id_header)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 0  # no answer started yet
        session, had_session = self.sessions.load(cookie)
        scope["session"] = session

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = self.guard.with_headers(message.get("headers", ()))
                self.sessions.add_headers(headers, session, had_session)
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            if self.guard.allows(scope["method"], origin, fetch_site):
                await self.app(scope, receive, send_with_headers)
            else:
                await self.guard.refusal(Request(scope))(scope, receive, send_with_headers)
        except ClientDisconnect:
            status = CLIENT_CLOSED  # the client left mid-request: nobody to answer, nothing went wrong
        except Exception as exc:
            handler = self.errors.handler_for(exc) if self.errors is not None else None
            if handler is None or status:
                raise  # nothing to answer with, or the answer has begun: the server logs it, closes the connection
            response = await handler(Request(scope, receive), exc)
            # Answered in full (a 500's handler logs it, once), so the connection stays usable: not raised again.
            await response(scope, receive, send_with_headers)
        finally:
            self.recorder.record(scope, status or 500, time.perf_counter() - started, request_id)
            REQUEST_ID.reset(token)
