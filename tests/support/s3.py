"""Setting up and inspecting an S3 server from a test, with plain boto3 (not the app's clients)."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from service import devstack
from service.core import keys
from service.devstack import S3Endpoint

# Keys a user's filenames can make: spaces, '+', '%', '~', '=', '&', accents, CJK, an emoji.
AWKWARD_NAMES = ["take 1.wav", "a+b=c&d.wav", "100%.wav", "~tilde.wav", "café.wav", "録音.wav", "🎙️ mic.wav"]

# moto's server in a process of its own: it reads S3_UPLOAD_PART_MIN_SIZE once, when it is imported.
_MOTO_PROCESS = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


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


def store_bucket(store: str, s3: S3Endpoint, request: Any) -> tuple[S3Endpoint, str]:
    """A fresh bucket on moto (the ``s3`` fixture's) or radosgw (``store == "radosgw"``, started on demand)."""
    endpoint = s3 if store == "moto" else request.getfixturevalue("rgw_endpoint")
    bucket = f"store-{secrets.token_hex(4)}"
    devstack.create_bucket(endpoint, bucket, ["http://127.0.0.1"])
    return endpoint, bucket


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


@contextlib.contextmanager
def moto_accepting_parts_of(min_part_size: int) -> Iterator[S3Endpoint]:
    """moto's S3 told to assemble parts as small as ``min_part_size`` (real S3 wants 5 MiB), for short tests."""
    env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(min_part_size)}
    with subprocess.Popen(
        [sys.executable, "-c", _MOTO_PROCESS],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its access log
        text=True,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        try:
            yield S3Endpoint(
                f"http://127.0.0.1:{port}",
                devstack.DEV_ACCESS_KEY,
                devstack.DEV_SECRET_KEY,
                devstack.DEV_REGION,
            )
        finally:
            process.stdin.close()
            process.wait(timeout=10)


# A well-formed upload id that is the same in every process, for parametrized cases (a test's
# parameters must not differ between pytest-xdist's workers).
SOME_UPLOAD_ID = "8203834036741b806176566d9"
