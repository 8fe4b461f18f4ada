"""Signing a browser POST policy fast, with botocore's own SigV4 building blocks.

``generate_presigned_post`` spends most of its time (about 90 µs a call) on
machinery a POST policy does not need: endpoint rules, event hooks and request
objects that give the same answer for a given bucket every time. The signing
itself is ``botocore.auth.S3SigV4PostAuth.add_auth``, which this module calls
directly. The one thing it changes is where the SigV4 signing key comes from:
that key depends only on the secret, the date, the region and the service, so it
is derived once per (secret, day, region, service) and cached, instead of four
HMACs on every call.

Credentials are passed in frozen per call (see ``Storage.presign_post``), so
temporary credentials bring their session token, and rotated credentials take
effect on the next call: a new secret or a new day is simply a new cache key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.auth import ISO8601, S3SigV4PostAuth
from botocore.credentials import ReadOnlyCredentials


@dataclass(frozen=True)
class PostTarget:
    """Where a bucket's presigned POSTs go and how they are scoped; fixed for a client and bucket."""

    url: str
    region: str
    service: str = "s3"

    @classmethod
    def from_botocore(cls, post: dict[str, Any]) -> PostTarget:
        """Learn the URL and credential scope from one answer of botocore's ``generate_presigned_post``.

        botocore resolves them through its endpoint rules (path or virtual-host
        style, regional or global endpoint); asking it once keeps every such
        decision botocore's.
        """
        # x-amz-credential is <access key>/<yyyymmdd>/<region>/<service>/aws4_request
        _, _, region, service, _ = str(post["fields"]["x-amz-credential"]).rsplit("/", 4)
        return cls(url=str(post["url"]), region=region, service=service)


@functools.lru_cache(maxsize=32)
def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    """The SigV4 signing key: the chain botocore's ``SigV4Auth.signature`` runs on every call."""
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class _CachedKeyPostAuth(S3SigV4PostAuth):  # type: ignore[misc]  # botocore has no type hints
    """botocore's POST-policy signer, with the signing key taken from the daily cache."""

    def signature(self, string_to_sign: str, request: Any) -> str:
        day = request.context["timestamp"][:8]
        key = signing_key(self.credentials.secret_key, day, self._region_name, self._service_name)
        return str(self._sign(key, string_to_sign, hex=True))


@dataclass
class _PolicyRequest:
    """The part of a botocore request that ``S3SigV4PostAuth.add_auth`` reads and writes."""

    context: dict[str, Any] = field(default_factory=dict)


def sign_post(
    credentials: ReadOnlyCredentials,
    target: PostTarget,
    bucket: str,
    key: str,
    fields: dict[str, str],
    conditions: list[Any],
    expires_in: int,
    now: datetime,
) -> dict[str, str]:
    """The form fields of a presigned POST, exactly as ``generate_presigned_post`` builds them.

    ``now`` is naive UTC, as botocore's clock gives it; ``add_auth`` reads that
    clock again for ``x-amz-date``, as it does inside botocore.
    """
    form = {**fields, "key": key}
    policy = {
        "expiration": (now + timedelta(seconds=expires_in)).strftime(ISO8601),
        "conditions": [*conditions, {"bucket": bucket}, {"key": key}],
    }
    request = _PolicyRequest({"s3-presign-post-fields": form, "s3-presign-post-policy": policy})
    _CachedKeyPostAuth(credentials, target.service, target.region).add_auth(request)
    return form
