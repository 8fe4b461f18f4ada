"""Wiring only: settings, middleware, routes and the lifespan that owns the S3 clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from service import __version__, api, auth, events, health, library, observability, uploads, uppy
from service.api import ApiRoute, Spec
from service.edge import Edge
from service.errors import EXCEPTION_HANDLERS, ErrorHandlers
from service.guards import SiteGuard
from service.observability import RequestRecorder
from service.quota import Usage
from service.ratelimit import open_limiter
from service.resources import Resources
from service.schemas import Health, Readiness, encoder
from service.session import CookieSessions
from service.settings import EVENTS_PATH, Settings, load_settings
from service.storage import STORAGE_DOWN, handle_storage_down, open_storage
from service.sweeper import sweep_periodically
from service.webhooks import open_webhooks

STATIC = Path(__file__).parent / "static"


class Soundpost(Starlette):
    """Starlette with the edge layer as its only layer in front of the routes.

    Starlette puts ServerErrorMiddleware and ExceptionMiddleware around every
    app, and each wraps ``send`` again on every request; the edge layer already
    sees every answer start, so it answers exceptions itself, with the app's
    exception handlers chosen as those two layers choose them (``ErrorHandlers``).
    """

    def __init__(
        self, *, guard: SiteGuard, sessions: CookieSessions, recorder: RequestRecorder, **options: Any
    ) -> None:
        self.guard = guard
        self.sessions = sessions
        self.recorder = recorder
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        if self.user_middleware:
            raise RuntimeError(
                "Soundpost has one layer, service.edge.Edge: add the concern there, not as middleware"
            )
        errors = ErrorHandlers(self.exception_handlers)
        return Edge(
            self.router, guard=self.guard, sessions=self.sessions, recorder=self.recorder, errors=errors
        )


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
    "Readiness: the bucket is reachable and identity-provider metadata loads (503 and the failed checks if not).",
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
        # S3 bucket notifications from the store: token-authenticated, no session (service/events.py).
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
    async def lifespan(app: Starlette) -> AsyncIterator[Resources]:
        async with open_storage(config) as storage, open_webhooks(config) as webhooks:
            limiter = open_limiter(config)
            state = Resources(
                settings=config, storage=storage, webhooks=webhooks, limiter=limiter, usage=Usage(config)
            )
            sweeper = (
                asyncio.create_task(sweep_periodically(state, config.sweep_interval))
                if config.sweep_interval
                else None
            )
            try:
                yield state
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
                limiter.close()

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
            **dict.fromkeys(STORAGE_DOWN, handle_storage_down),
        },
        lifespan=lifespan,
    )
    app.state.oauth = auth.build_oauth(config)
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
