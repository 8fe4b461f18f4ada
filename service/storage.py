"""S3 access: clients opened once for the life of the process, and presigning.

Two clients share one aioboto3 session. ``s3`` talks to the endpoint the server
reaches; ``signer`` is configured with the endpoint the *browser* reaches (they
differ under docker-compose, where the app sees ``minio:9000`` and the browser
sees ``localhost:9000``). Presigning is local computation, so ``signer`` never
opens a connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
from botocore.compat import get_current_datetime
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from service.post_policy import PostTarget, sign_post
from service.settings import Settings

# Bounded waits and few retries: a slow S3 must not hold requests for minutes.
CLIENT_CONFIG = dict(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})


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
        self._post_target: PostTarget | None = None

    async def presign_post(self, key: str, content_type: str, max_bytes: int) -> PresignedPost:
        """A POST policy for one object: botocore's signer, without botocore's per-call overhead.

        The first call goes through ``generate_presigned_post`` and learns the URL
        and credential scope from it; later calls sign with ``post_policy.sign_post``,
        which produces the same fields for the same inputs (tests/test_fast_presign.py).
        """
        ttl = self.settings.presign_ttl
        fields = {"Content-Type": content_type, "success_action_status": "201"}
        conditions = policy_conditions(content_type, max_bytes)
        now = get_current_datetime()
        expires_at = (now + timedelta(seconds=ttl)).replace(microsecond=0, tzinfo=UTC)
        if self._post_target is None:
            post = await self.signer.generate_presigned_post(
                Bucket=self.settings.s3_bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=ttl,
            )
            self._post_target = PostTarget.from_botocore(post)
            return PresignedPost(url=post["url"], fields=post["fields"], expires_at=expires_at)
        credentials = await self._frozen_credentials()
        signed = sign_post(credentials, self._post_target, self.settings.s3_bucket, key, fields, conditions, ttl, now)
        return PresignedPost(url=self._post_target.url, fields=signed, expires_at=expires_at)

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        """The signer's credentials as of now, from the same provider botocore's presigning uses.

        Refreshable credentials (the default chain's instance roles, SSO, assume-role)
        refresh here when due; temporary credentials bring their session token.
        """
        provider = self.signer._get_credentials()  # botocore's accessor for the client's provider
        if provider is None:
            raise NoCredentialsError()
        frozen: ReadOnlyCredentials = await provider.get_frozen_credentials()
        return frozen


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
        **CLIENT_CONFIG,  # type: ignore[arg-type]
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
