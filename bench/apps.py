"""The comparison apps the benchmark serves next to Soundpost, with the same server settings.

``ceiling``: a bare Starlette endpoint returning a small constant JSON, the most
this HTTP stack can do per request. ``floor``: a bare Starlette endpoint with the
presign request's shape and nothing else: it reads the same JSON body and answers
a constant of the same size with the same headers, so the README can tell what
the HTTP exchange itself costs from what Soundpost's own code costs. ``naive``:
Soundpost itself (same middleware, session, checks) except that each presign
opens its own aioboto3 client, as the usual hand-written endpoint does, so the
README can show what one client per process buys.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.app import Soundpost, create_app
from service.settings import Settings, load_settings
from service.storage.client import PresignedPost, Storage, client_config, policy_conditions


async def constant(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def ceiling() -> Starlette:
    return Starlette(routes=[Route("/", constant)])


# A presign answer's size and headers (besides content-length and content-type), as constants.
PRESIGN_SHAPED_KEY = "uploads/" + "u" * 26 + "/" + "8" * 13 + "f" * 12 + "/take.wav"
PRESIGN_SHAPED_ANSWER = JSONResponse(
    {
        "url": "http://127.0.0.1:9000/soundpost-bench",
        "fields": {
            "Content-Type": "audio/wav",
            "success_action_status": "201",
            "key": PRESIGN_SHAPED_KEY,
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "testing/20261124/us-east-1/s3/aws4_request",
            "x-amz-date": "20261124T120000Z",
            "policy": "p" * 560,
            "x-amz-signature": "s" * 64,
        },
        "key": PRESIGN_SHAPED_KEY,
        "expiresAt": "2026-11-24T12:10:00Z",
        "maxBytes": 1000,
    }
).body
PRESIGN_SHAPED_HEADERS = {
    "vary": "Cookie",
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "cache-control": "no-store",
    "x-request-id": "0" * 32,
}


async def presign_shaped(request: Request) -> Response:
    await request.body()
    return Response(PRESIGN_SHAPED_ANSWER, media_type="application/json", headers=PRESIGN_SHAPED_HEADERS)


def floor() -> Starlette:
    return Starlette(routes=[Route("/", presign_shaped, methods=["POST"])])


class ClientPerRequestStorage(Storage):
    """Presigns through a fresh aioboto3 client every time, the way many examples do.

    The aioboto3 session is shared (as a module-level ``session = aioboto3.Session()``
    would be), so botocore's loaded service models are reused: the cost measured is
    the client's, not the session's.
    """

    session = aioboto3.Session()

    async def presign_post(
        self, key: str, content_type: str, max_bytes: int, checksum: str | None = None
    ) -> PresignedPost:
        settings = self.settings
        now = datetime.now(UTC)
        async with self.session.client(
            "s3",
            endpoint_url=settings.browser_s3_endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=str(settings.s3_secret_access_key)
            if settings.s3_secret_access_key
            else None,
            config=client_config(settings),
        ) as client:
            post = await client.generate_presigned_post(
                Bucket=settings.s3_bucket,
                Key=key,
                Fields={"Content-Type": content_type, "success_action_status": "201"},
                Conditions=policy_conditions(content_type, max_bytes),
                ExpiresIn=settings.presign_ttl,
            )
        expires_at = (now + timedelta(seconds=settings.presign_ttl)).replace(microsecond=0)
        return PresignedPost(url=post["url"], fields=post["fields"], expires_at=expires_at)


def naive() -> Soundpost:
    settings: Settings = load_settings(os.environ)
    app = create_app(settings)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Soundpost) -> AsyncIterator[Any]:
        async with inner(app) as state:
            no_client: Any = None  # it opens a client per call instead of holding one
            yield {**(state or {}), "storage": ClientPerRequestStorage(settings, no_client, no_client)}

    app.router.lifespan_context = lifespan
    return app
