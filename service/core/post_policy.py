"""Signing a browser POST policy fast: the fields botocore builds, without botocore's per-call work.

``generate_presigned_post`` spends most of its time (about 90 µs a call) on
machinery a POST policy does not need: endpoint rules, event hooks and request
objects that give the same answer for a given bucket every time. Even its last
step, ``S3SigV4PostAuth.add_auth``, reads the clock and formats dates twice and
derives the SigV4 signing key with four HMACs on every call.

What a POST policy needs is small (AWS's "Browser-based uploads using POST",
SigV4): a JSON policy, base64-encoded, signed with HMAC-SHA256 under the signing
key for (secret, day, region, service). This module builds the fields
``add_auth`` builds, in the same order and with the same values; the one
difference is the policy's JSON text, written compactly by msgspec (UTF-8, no
spaces; ten times faster than ``json.dumps``), so it decodes to exactly
botocore's policy (tests/test_fast_presign.py holds it to that, and to botocore's
signature over it). The signing key is derived once per (secret, day, region,
service) and kept as a keyed ``hmac`` object that each signature copies
(OpenSSL's HMAC set-up costs more than hashing the policy); the date strings are
made once per second.

Credentials are passed in frozen per call (see ``Storage.presign_post``), so
temporary credentials bring their session token, and rotated credentials take
effect on the next call: a new secret or a new day is simply a new cache key.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from botocore.credentials import ReadOnlyCredentials

ALGORITHM = "AWS4-HMAC-SHA256"


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


@dataclass(frozen=True)
class SigningMoment:
    """The strings a policy signed at one second, for one lifetime, carries."""

    amz_date: str  # 20261124T120000Z: the x-amz-date field
    day: str  # 20261124: the credential scope's date
    expiration: str  # the policy's expiration, ISO 8601 as botocore writes it
    expires_at: datetime  # the same instant, for the API's answer


@functools.lru_cache(maxsize=8)
def signing_moment(epoch_second: int, expires_in: int) -> SigningMoment:
    """Formatting dates costs more than the HMAC; a second's worth of policies shares the strings."""
    now = datetime.fromtimestamp(epoch_second, UTC)
    expires = now + timedelta(seconds=expires_in)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    return SigningMoment(amz_date, amz_date[:8], expires.strftime("%Y-%m-%dT%H:%M:%SZ"), expires)


@functools.lru_cache(maxsize=32)
def keyed_signer(secret_key: str, day: str, region: str, service: str) -> hmac.HMAC:
    """An HMAC keyed with the SigV4 signing key, to copy per signature.

    The key is the chain botocore's ``SigV4Auth.signature`` derives on every call.
    """
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def sign_post(
    credentials: ReadOnlyCredentials,
    target: PostTarget,
    bucket: str,
    key: str,
    fields: dict[str, str],
    conditions: list[Any],
    moment: SigningMoment,
) -> dict[str, str]:
    """The form fields of a presigned POST, as ``generate_presigned_post`` builds them."""
    credential = f"{credentials.access_key}/{moment.day}/{target.region}/{target.service}/aws4_request"
    form = {
        **fields,
        "key": key,
        "x-amz-algorithm": ALGORITHM,
        "x-amz-credential": credential,
        "x-amz-date": moment.amz_date,
    }
    signed_conditions = [
        *conditions,
        {"bucket": bucket},
        {"key": key},
        {"x-amz-algorithm": ALGORITHM},
        {"x-amz-credential": credential},
        {"x-amz-date": moment.amz_date},
    ]
    if credentials.token is not None:
        form["x-amz-security-token"] = credentials.token
        signed_conditions.append({"x-amz-security-token": credentials.token})
    policy = {"expiration": moment.expiration, "conditions": signed_conditions}
    encoded = binascii.b2a_base64(msgspec.json.encode(policy), newline=False)  # what base64.b64encode does
    form["policy"] = encoded.decode("ascii")
    signature = keyed_signer(credentials.secret_key, moment.day, target.region, target.service).copy()
    signature.update(encoded)
    form["x-amz-signature"] = signature.hexdigest()
    return form
