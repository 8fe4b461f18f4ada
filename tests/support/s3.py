"""Setting up and inspecting an S3 server from a test, with plain boto3 (not the app's clients)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from service import devstack
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


def s3_settings(endpoint: S3Endpoint, bucket: str) -> dict[str, str]:
    """The SOUNDPOST_S3_* settings of an app that stores in ``bucket`` on ``endpoint``."""
    return {
        "SOUNDPOST_S3_ENDPOINT": endpoint.url,
        "SOUNDPOST_S3_REGION": endpoint.region,
        "SOUNDPOST_S3_BUCKET": bucket,
        "SOUNDPOST_S3_ACCESS_KEY_ID": endpoint.access_key,
        "SOUNDPOST_S3_SECRET_ACCESS_KEY": endpoint.secret_key,
    }
