"""Micro-benchmark of presigning alone: what each way of signing one POST policy costs.

No network: the clients point at a port nothing listens on, and presigning never
connects. Each figure is the median over several repeats of the time per call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import aioboto3
import boto3
import botocore.config
from botocore.auth import S3SigV4PostAuth

from service.core.post_policy import PostTarget, sign_post, signing_moment
from service.settings import load_settings
from service.storage.client import open_storage, policy_conditions

ENDPOINT = "http://127.0.0.1:9"
REGION = "us-east-1"
BUCKET = "soundpost"
KEY = "uploads/hqkfwhbmqnehe653abtov2vb2m/82045203016341d4104a96d6d/take.wav"
ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FIELDS = {"Content-Type": "audio/wav", "success_action_status": "201"}
CONFIG = botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"})


def per_call_us(run: Callable[[int], float], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of (seconds for ``calls`` calls) / calls, in µs."""
    return statistics.median(run(calls) / calls * 1e6 for _ in range(repeats))


def sync_timer(fn: Callable[[], object]) -> Callable[[int], float]:
    def run(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start

    return run


def bare_hmac_chain() -> str:
    """SigV4 key derivation and the signature over a policy: five HMAC-SHA256s, nothing else."""
    key = ("AWS4" + SECRET).encode()
    for part in ("20261124", REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(
        key, b"eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjRUMDA6MzE6MzhaIn0=" * 8, hashlib.sha256
    ).hexdigest()


def botocore_post_auth() -> dict[str, Any]:
    """botocore's S3SigV4PostAuth called directly, without the client around it."""
    from botocore.credentials import ReadOnlyCredentials

    request = SimpleNamespace(
        context={
            "s3-presign-post-fields": {**FIELDS, "key": KEY},
            "s3-presign-post-policy": {
                "expiration": "2026-11-24T00:31:38Z",
                "conditions": [*policy_conditions("audio/wav", 1000), {"bucket": BUCKET}],
            },
        }
    )
    S3SigV4PostAuth(ReadOnlyCredentials(ACCESS, SECRET, None), "s3", REGION).add_auth(request)
    return dict(request.context["s3-presign-post-fields"])


def settings() -> Any:
    return load_settings(
        {
            "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000",
            "SOUNDPOST_SESSION_SECRET": "b" * 40,
            "SOUNDPOST_PROVIDERS": "idp",
            "SOUNDPOST_PROVIDER_IDP_DISCOVERY_URL": f"{ENDPOINT}/.well-known/openid-configuration",
            "SOUNDPOST_PROVIDER_IDP_CLIENT_ID": "bench",
            "SOUNDPOST_PROVIDER_IDP_CLIENT_SECRET": "bench",
            "SOUNDPOST_S3_ENDPOINT": ENDPOINT,
            "SOUNDPOST_S3_REGION": REGION,
            "SOUNDPOST_S3_BUCKET": BUCKET,
            "SOUNDPOST_S3_ACCESS_KEY_ID": ACCESS,
            "SOUNDPOST_S3_SECRET_ACCESS_KEY": SECRET,
        }
    )


def measure(quick: bool) -> list[tuple[str, float]]:
    calls, repeats = (300, 3) if quick else (3000, 7)
    from botocore.credentials import ReadOnlyCredentials

    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=CONFIG,
    )
    target = PostTarget.from_botocore(client.generate_presigned_post(Bucket=BUCKET, Key=KEY))
    credentials = ReadOnlyCredentials(ACCESS, SECRET, None)

    def ours() -> dict[str, str]:
        return sign_post(
            credentials,
            target,
            BUCKET,
            KEY,
            FIELDS,
            policy_conditions("audio/wav", 1000),
            signing_moment(int(time.time()), 600),
        )

    def botocore_client() -> object:
        return client.generate_presigned_post(
            Bucket=BUCKET,
            Key=KEY,
            Fields=dict(FIELDS),
            Conditions=policy_conditions("audio/wav", 1000),
            ExpiresIn=600,
        )

    results = [
        ("bare HMAC chain (derive key + sign)", per_call_us(sync_timer(bare_hmac_chain), calls, repeats)),
        ("botocore S3SigV4PostAuth.add_auth", per_call_us(sync_timer(botocore_post_auth), calls, repeats)),
        ("Soundpost sign_post (cached key and dates)", per_call_us(sync_timer(ours), calls, repeats)),
        ("botocore generate_presigned_post", per_call_us(sync_timer(botocore_client), calls, repeats)),
    ]

    results += asyncio.run(measure_async(calls, repeats, 3 if quick else 20))
    return results


async def measure_async(calls: int, repeats: int, naive_calls: int) -> list[tuple[str, float]]:
    """The async paths, timed on one running event loop as the server runs them."""

    async def per_call(fn: Callable[[], Awaitable[object]], n: int) -> float:
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            timings.append((time.perf_counter() - start) / n * 1e6)
        return statistics.median(timings)

    session = aioboto3.Session()

    async def client_per_call() -> object:
        async with session.client(
            "s3",
            endpoint_url=ENDPOINT,
            region_name=REGION,
            aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET,
            config=CONFIG,
        ) as fresh:
            return await fresh.generate_presigned_post(Bucket=BUCKET, Key=KEY)

    async with open_storage(settings()) as storage:
        await storage.presign_post(KEY, "audio/wav", 1000)  # the first call learns URL and scope

        async def storage_presign() -> object:
            return await storage.presign_post(KEY, "audio/wav", 1000)

        async def aiobotocore_presign() -> object:
            return await storage.signer.generate_presigned_post(
                Bucket=BUCKET,
                Key=KEY,
                Fields=dict(FIELDS),
                Conditions=policy_conditions("audio/wav", 1000),
                ExpiresIn=600,
            )

        return [
            (
                "Soundpost Storage.presign_post (async, credentials frozen per call)",
                await per_call(storage_presign, calls),
            ),
            (
                "aiobotocore generate_presigned_post (the previous code)",
                await per_call(aiobotocore_presign, calls),
            ),
            (
                "aioboto3 client per call, shared session (naive)",
                await per_call(client_per_call, naive_calls),
            ),
        ]


def report(quick: bool = False) -> str:
    results = measure(quick)
    base = results[0][1]
    rows = ["| presign, one call | µs | × bare HMAC chain |", "| --- | ---: | ---: |"]
    rows += [f"| {name} | {us:,.1f} | {us / base:,.1f} |" for name, us in results]
    return "\n".join(rows)


if __name__ == "__main__":
    print(f"{datetime.now():%Y-%m-%d %H:%M}")
    print(report())
