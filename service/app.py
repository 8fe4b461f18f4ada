"""Wiring only: settings, middleware, routes and the lifespan that owns the S3 clients."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service import auth, library, uploads, uppy
from service.errors import EXCEPTION_HANDLERS
from service.guards import CrossSiteGuard, SecurityHeaders
from service.schemas import json_response
from service.settings import Settings, load_settings
from service.storage import Storage, open_storage
from service.webhooks import WebhookSender, open_webhooks

STATIC = Path(__file__).parent / "static"


class State(TypedDict):
    storage: Storage
    webhooks: WebhookSender | None


def page_csp(settings: Settings) -> str:
    """The page may talk to the app itself and the browser-visible S3 endpoint, nothing else."""
    s3 = settings.browser_s3_endpoint or f"https://{settings.s3_bucket}.s3.{settings.s3_region}.amazonaws.com https://s3.{settings.s3_region}.amazonaws.com"
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


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


def routes() -> list[Route | Mount]:
    return [
        Route("/", index, name="index"),
        Route("/healthz", healthz, name="healthz"),
        Route("/auth/login", auth.login, name="login"),
        Route("/auth/callback/{provider}", auth.callback, name="callback"),
        Route("/auth/logout", auth.logout, methods=["POST"], name="logout"),
        Route("/api/me", auth.me, name="me"),
        Route("/api/providers", auth.providers, name="providers"),
        Route("/api/upload/presigned-url", uploads.presigned_url, methods=["POST"], name="presign"),
        Route("/api/uploads", library.list_uploads, name="uploads"),
        Route("/api/uploads/{id}", library.delete, methods=["DELETE"], name="upload"),
        Route("/api/uploads/{id}/url", library.playback_url, name="upload_url"),
        Route("/api/uploads/{id}/confirm", library.confirm, methods=["POST"], name="upload_confirm"),
        # Uppy's @uppy/aws-s3 protocol; "batch" precedes the {partNumber} route it would otherwise match.
        Route("/s3/params", uppy.params, name="uppy_params"),
        Route("/s3/multipart", uppy.create_multipart, methods=["POST"], name="uppy_create"),
        Route("/s3/multipart/{uploadId}/batch", uppy.sign_parts, name="uppy_sign_parts"),
        Route("/s3/multipart/{uploadId}/complete", uppy.complete, methods=["POST"], name="uppy_complete"),
        Route("/s3/multipart/{uploadId}/{partNumber}", uppy.sign_part, name="uppy_sign_part"),
        Route("/s3/multipart/{uploadId}", uppy.list_parts, name="uppy_parts"),
        Route("/s3/multipart/{uploadId}", uppy.abort, methods=["DELETE"], name="uppy_abort"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(settings: Settings | Mapping[str, str] | None = None) -> Starlette:
    """Build the app from validated settings, a mapping of SOUNDPOST_* variables, or the environment."""
    if settings is None:
        settings = load_settings(os.environ)
    elif not isinstance(settings, Settings):
        settings = load_settings(settings)
    config = settings

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_storage(config) as storage, open_webhooks(config) as webhooks:
            app.state.storage = storage
            app.state.webhooks = webhooks
            yield {"storage": storage, "webhooks": webhooks}

    middleware = [
        Middleware(SecurityHeaders, https=config.secure_cookies),
        Middleware(CrossSiteGuard, allowed_origins=(config.public_origin, *config.trusted_origins)),
        Middleware(
            SessionMiddleware,
            secret_key=str(config.session_secret),
            session_cookie=config.session_cookie,
            max_age=config.session_max_age,
            same_site="lax",
            https_only=config.secure_cookies,
            path=config.root_path or "/",
        ),
    ]
    app = Starlette(
        routes=routes(),
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.settings = config
    app.state.oauth = auth.build_oauth(config)
    app.state.csp = page_csp(config)
    return app

