"""Setting up and inspecting an S3 server from a test, with plain boto3 (not the app's clients)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from service import devstack, keys
from service.devstack import S3Endpoint


@contextlib.contextmanager
def admin(endpoint: S3Endpoint) -> Iterator[Any]:
    """A boto3 client that is closed after use (an unclosed one warns, and warnings are errors)."""
    with contextlib.closing(devstack.s3_admin(endpoint)) as client:
        yield client


def new_bucket(endpoint: S3Endpoint) -> str:
    """A bucket of its own for one test, so what a test finds in it is what that test put there."""
    bucket = f"policy-{secrets.token_hex(6)}"
    with admin(endpoint) as client:
        client.create_bucket(Bucket=bucket)
    return bucket


def object_keys(endpoint: S3Endpoint, bucket: str) -> list[str]:
    with admin(endpoint) as client:
        listing = client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def stored_object(endpoint: S3Endpoint, bucket: str, key: str) -> tuple[bytes, str]:
    """(bytes, Content-Type) of an object as the S3 server stored it."""
    with admin(endpoint) as client:
        got = client.get_object(Bucket=bucket, Key=key)
        with contextlib.closing(got["Body"]) as body:
            return body.read(), got["ContentType"]


def upload_id_of(key: str, prefix: str = "uploads/") -> str:
    """The upload id in an object key the app built (``{prefix}{userId}/{uploadId}/{filename}``)."""
    parsed = keys.parse_key(prefix, key)
    assert parsed is not None, key
    return parsed[1]
