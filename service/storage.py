"""S3 access: clients opened once for the life of the process, and presigning.

Two clients share one aioboto3 session. ``s3`` talks to the endpoint the server
reaches; ``signer`` is configured with the endpoint the *browser* reaches (they
differ under docker-compose, where the app sees ``minio:9000`` and the browser
sees ``localhost:9000``). Presigning is local computation, so ``signer`` never
opens a connection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
import botocore.exceptions
from botocore.config import Config
from starlette.requests import Request
from starlette.responses import Response

from service.errors import ApiError, error_response
from service.settings import Settings

logger = logging.getLogger("soundpost.storage")

# Bounded waits and few retries: a slow S3 must not hold requests for minutes.
CLIENT_CONFIG: dict[str, Any] = dict(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    expires_at: datetime


def policy_conditions(content_type: str, max_bytes: int) -> list[Any]:
    """What the POST policy pins besides bucket, key and credentials (which botocore adds)."""
    return [
        {"Content-Type": content_type},
        {"success_action_status": "201"},
        ["content-length-range", 1, max_bytes],
    ]


class Storage:
    def __init__(self, settings: Settings, s3: Any, signer: Any) -> None:
        self.settings = settings
        self.s3 = s3
        self.signer = signer

    async def presign_post(self, key: str, content_type: str, max_bytes: int) -> PresignedPost:
        ttl = self.settings.presign_ttl
        expires_at = (datetime.now(UTC) + timedelta(seconds=ttl)).replace(microsecond=0)
        post = await self.signer.generate_presigned_post(
            Bucket=self.settings.s3_bucket,
            Key=key,
            Fields={"Content-Type": content_type, "success_action_status": "201"},
            Conditions=policy_conditions(content_type, max_bytes),
            ExpiresIn=ttl,
        )
        return PresignedPost(url=post["url"], fields=post["fields"], expires_at=expires_at)


def _session(settings: Settings) -> aioboto3.Session:
    """Explicit keys when configured, otherwise the default AWS credential chain."""
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        return aioboto3.Session(
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=str(settings.s3_secret_access_key),
            aws_session_token=str(settings.s3_session_token) if settings.s3_session_token else None,
            region_name=settings.s3_region,
        )
    return aioboto3.Session(region_name=settings.s3_region)


def _client_config(settings: Settings) -> Config:
    # Custom endpoints (MinIO, Ceph, moto) want path-style addressing; AWS picks its own.
    addressing = "path" if settings.s3_endpoint else "auto"
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing},
        **CLIENT_CONFIG,
    )


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    session = _session(settings)
    config = _client_config(settings)
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.s3_endpoint, config=config)
        )
        signer = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.browser_s3_endpoint, config=config)
        )
        yield Storage(settings, s3, signer)


# What a stopped, unreachable or hung S3 raises once botocore's bounded retries are spent.
STORAGE_DOWN: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)


def storage_unavailable() -> ApiError:
    return ApiError(
        503, "storage_unavailable", "Storage cannot be reached right now. Try again in a moment.",
        headers={"Retry-After": "5"},
    )


async def handle_storage_down(request: Request, exc: Exception) -> Response:
    logger.warning("S3 unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(request, storage_unavailable())
