"""SigV4 for browser POST policies, written from AWS's documentation with hashlib and hmac only.

It shares no code with botocore, so a test that recomputes a signature with it checks
botocore's signing (and our inputs to it) instead of repeating it.
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-post-example.html
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    """The key for one day, region and service: HMAC chain from "AWS4" + secret to "aws4_request"."""
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def policy_signature(secret_key: str, date: str, region: str, policy_b64: str) -> str:
    """x-amz-signature of a POST form: hex HMAC-SHA256 of the base64 policy as sent."""
    key = signing_key(secret_key, date, region)
    return hmac.new(key, policy_b64.encode("ascii"), hashlib.sha256).hexdigest()


def decode_policy(policy_b64: str) -> dict[str, Any]:
    """The policy document a POST form carries base64-encoded."""
    document: dict[str, Any] = json.loads(base64.b64decode(policy_b64, validate=True))
    return document
