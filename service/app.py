"""Wiring only: settings, middleware, routes and the lifespan that owns the S3 clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.datastructures import State, URLPath
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ExceptionHandler, Lifespan, Receive, Scope, Send

from service import __version__, observability
from service.http import api, health
from service.http.api import ApiRoute, Spec
from service.http.edge import Edge
from service.http.guards import SiteGuard
from service.http.handlers import EXCEPTION_HANDLERS, ErrorHandlers
from service.identity import providers as discovery
from service.identity.revocation import open_revocations
from service.identity.session import CookieSessions
from service.lifecycle import derived, events, library, promotion
from service.lifecycle.sweeper import sweep_periodically
from service.limits.connection import shared_connection
from service.limits.shared_reservations import open_reservations
from service.limits.windows import close_limiters, open_limiters
from service.observability import RequestRecorder
from service.resources import Resources
from service.schemas import Health, Readiness, encoder
from service.settings import EVENTS_PATH, Settings, load_settings
from service.signin import routes as auth
from service.storage.capabilities import settle_at_startup
from service.storage.client import check_at_startup, open_storage
from service.uploads import limits as upload_limits
from service.uploads import presign as uploads
from service.uploads import uppy
from service.webhooks import open_webhooks

STATIC = Path(__file__).parent / "static"
# Shutdown gives announcements under way this long; the sweeper delivers any that were cut short.
ANNOUNCE_AT_SHUTDOWN_SECONDS = 5.0


class Soundpost:
    """The ASGI app: the edge layer in front of Starlette's Router, and nothing else.

    Starlette's application class puts two error layers of its own (ServerErrorMiddleware,
    ExceptionMiddleware) around every app, each wrapping ``send`` again on every request;
    the edge layer already sees every answer start, so it answers exceptions itself,
    with these handlers chosen as those layers choose them (``ErrorHandlers``; measured:
    see bench/README.md). Routing, lifespan and ``url_for`` are the
    public Router's; ``state`` is what ``request.app.state`` reads.
    """

    def __init__(
        self,
        *,
        guard: SiteGuard,
        sessions: CookieSessions,
        recorder: RequestRecorder,
        routes: Sequence[BaseRoute],
        exception_handlers: Mapping[Any, ExceptionHandler],
        lifespan: Lifespan[Any],
    ) -> None:
        self.guard = guard
        self.sessions = sessions
        self.recorder = recorder
        self.state = State()
        self.router = Router(list(routes), lifespan=lifespan)
        self.exception_handlers = dict(exception_handlers)
        self.edge = Edge(
            self.router,
            guard=guard,
            sessions=sessions,
            recorder=recorder,
            errors=ErrorHandlers(self.exception_handlers),
        )

    @property
    def routes(self) -> list[BaseRoute]:
        return self.router.routes

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.router.url_path_for(name, **path_params)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = (
            self  # what request.app reads, and what makes the router raise 404 and 405 for the edge
        )
        await self.edge(scope, receive, send)


def page_csp(settings: Settings) -> str:
    """The page may talk to the app itself and the browser-visible S3 endpoint, nothing else."""
    s3 = (
        settings.browser_s3_endpoint
        or f"https://{settings.s3_bucket}.s3.{settings.s3_region}.amazonaws.com https://s3.{settings.s3_region}.amazonaws.com"
    )
    return (
        "default-src 'self'; "
        f"connect-src 'self' {s3}; "
        f"media-src 'self' {s3}; "
        "img-src 'self'; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


async def index(request: Request) -> Response:
    return FileResponse(
        STATIC / "index.html",
        headers={"Content-Security-Policy": request.app.state.csp, "Cache-Control": "no-cache"},
    )


HEALTHZ = Spec("Liveness: the process answers. No I/O.", response=Health, tag="operations")
READYZ = Spec(
    "Readiness, all checks at once within 5 s: the bucket and, if shared, Redis (sign-outs followed, budgets) "
    "are required (503 and the failed checks if not); a provider that cannot be reached leaves the replica "
    'ready as "degraded".',
    response=Readiness,
    also={503: Readiness},
    tag="operations",
)
METRICS = Spec("Prometheus metrics.", response=str, media_type="text/plain", tag="operations")
OPENAPI = Spec("This document.", response=dict[str, Any], tag="operations")


def routes() -> list[BaseRoute]:
    """Every route. JSON endpoints are ``ApiRoute``s, so /openapi.json describes each of them."""
    return [
        # The two presign routes first: Starlette tries routes in order, and these are the busy ones.
        ApiRoute(
            "/api/upload/presigned-url",
            uploads.presigned_url,
            method="POST",
            name="presign",
            spec=uploads.PRESIGN,
        ),
        ApiRoute("/s3/params", uppy.params, method="GET", name="uppy_params", spec=uppy.PARAMS),
        Route("/", index, name="index"),
        Route("/auth/login", auth.login, name="login"),
        Route("/auth/callback/{provider}", auth.callback, name="callback"),
        ApiRoute("/auth/logout", auth.logout, method="POST", name="logout", spec=auth.LOGOUT),
        ApiRoute("/api/me", auth.me, method="GET", name="me", spec=auth.ME),
        ApiRoute("/api/providers", auth.providers, method="GET", name="providers", spec=auth.PROVIDERS),
        ApiRoute(
            "/api/limits", upload_limits.upload_limits, method="GET", name="limits", spec=upload_limits.LIMITS
        ),
        ApiRoute("/api/uploads", library.list_uploads, method="GET", name="uploads", spec=library.LIST),
        ApiRoute("/api/uploads/{id}", library.delete, method="DELETE", name="upload", spec=library.DELETE),
        ApiRoute(
            "/api/uploads/{id}/url",
            library.playback_url,
            method="GET",
            name="upload_url",
            spec=library.PLAYBACK_URL,
        ),
        ApiRoute(
            "/api/uploads/{id}/confirm",
            library.confirm,
            method="POST",
            name="upload_confirm",
            spec=library.CONFIRM,
        ),
        # What decoding made beside an upload.
        ApiRoute(
            "/api/uploads/{id}/peaks", derived.peaks, method="GET", name="upload_peaks", spec=derived.PEAKS
        ),
        ApiRoute(
            "/api/uploads/{id}/rendition",
            derived.rendition,
            method="GET",
            name="upload_rendition",
            spec=derived.RENDITION,
        ),
        # Uppy's @uppy/aws-s3 protocol; "batch" precedes the {partNumber} route it would otherwise match.
        ApiRoute("/s3/multipart", uppy.create_multipart, method="POST", name="uppy_create", spec=uppy.CREATE),
        ApiRoute(
            "/s3/multipart/{uploadId}/batch",
            uppy.sign_parts,
            method="GET",
            name="uppy_sign_parts",
            spec=uppy.SIGN_PARTS,
        ),
        ApiRoute(
            "/s3/multipart/{uploadId}/complete",
            uppy.complete,
            method="POST",
            name="uppy_complete",
            spec=uppy.COMPLETE,
        ),
        ApiRoute(
            "/s3/multipart/{uploadId}/{partNumber}",
            uppy.sign_part,
            method="GET",
            name="uppy_sign_part",
            spec=uppy.SIGN_PART,
        ),
        ApiRoute(
            "/s3/multipart/{uploadId}", uppy.list_parts, method="GET", name="uppy_parts", spec=uppy.PARTS
        ),
        ApiRoute("/s3/multipart/{uploadId}", uppy.abort, method="DELETE", name="uppy_abort", spec=uppy.ABORT),
        # S3 bucket notifications from the store: token-authenticated, no session (service/lifecycle/events.py).
        ApiRoute(EVENTS_PATH, events.receive, method="POST", name="s3_events", spec=events.RECEIVE),
        ApiRoute("/healthz", health.healthz, method="GET", name="healthz", spec=HEALTHZ),
        ApiRoute("/readyz", health.readyz, method="GET", name="readyz", spec=READYZ),
        ApiRoute("/metrics", observability.metrics, method="GET", name="metrics", spec=METRICS),
        ApiRoute("/openapi.json", api.openapi, method="GET", name="openapi", spec=OPENAPI),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(settings: Settings | Mapping[str, str] | None = None) -> Soundpost:
    """Build the app from validated settings, a mapping of SOUNDPOST_* variables, or the environment."""
    if settings is None:
        settings = load_settings(os.environ)
    elif not isinstance(settings, Settings):
        settings = load_settings(settings)
    config = settings

    @contextlib.asynccontextmanager
    async def lifespan(app: Soundpost) -> AsyncIterator[Resources]:
        shared = shared_connection(config)  # budgets and reservations, one script call per loop pass
        async with (
            open_storage(config) as storage,
            open_webhooks(config) as webhooks,
            open_revocations(config) as revocations,
            open_reservations(config, shared) as reservations,
        ):
            if await check_at_startup(storage):  # a missing bucket or refused credentials stop start-up
                await settle_at_startup(storage)  # POST or PUT; a store ignoring conditional writes stops it
            limiters = open_limiters(config, shared)
            state = Resources(
                settings=config,
                storage=storage,
                webhooks=webhooks,
                limiters=limiters,
                providers=discovery.provider_clients(config),
                revocations=revocations,
                reservations=reservations,
            )
            sweeper = (
                asyncio.create_task(sweep_periodically(state, config.sweep_interval))
                if config.sweep_interval
                else None
            )
            lag = asyncio.create_task(observability.watch_loop_lag(), name="soundpost-loop-lag")
            try:
                with observability.startup_heap_frozen():
                    yield state
            finally:
                for task in (sweeper, lag):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                await promotion.announcements_finished(ANNOUNCE_AT_SHUTDOWN_SECONDS)
                close_limiters(limiters)

    app = Soundpost(
        guard=SiteGuard((config.public_origin, *config.trusted_origins), https=config.secure_cookies),
        sessions=CookieSessions(
            str(config.session_secret),
            session_cookie=config.session_cookie,
            max_age=config.session_max_age,
            same_site="lax",
            https_only=config.secure_cookies,
            path=config.root_path or "/",
        ),
        recorder=RequestRecorder(access_log=config.access_log),
        routes=routes(),
        exception_handlers={
            **EXCEPTION_HANDLERS,
        },
        lifespan=lifespan,
    )
    app.state.csp = page_csp(config)
    app.state.openapi = encoder.encode(
        api.document(
            app.routes,
            title="Soundpost",
            version=__version__,
            server=config.public_url,
            cookie=config.session_cookie,
        )
    )
    return app
