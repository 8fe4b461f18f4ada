"""The fast presign path signs the policy botocore would sign, with the credentials of the moment."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.auth
import botocore.signers
import httpx
import pytest
from botocore.auth import S3SigV4PostAuth
from botocore.credentials import ReadOnlyCredentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.core.post_policy import PostTarget, SigningMoment, sign_post, signing_moment
from service.devstack import S3Endpoint
from service.settings import load_settings
from service.storage.client import open_storage, policy_conditions
from tests.support.s3 import admin as s3_admin
from tests.support.servers import serve_asgi

BUCKET = "soundpost-uploads"
KEY = "uploads/hqkfwhbmqnehe653abtov2vb2m/82045203016341d4104a96d6d/take.wav"
FIELDS = {"Content-Type": "audio/wav", "success_action_status": "201"}


def conditions() -> list[Any]:
    """A fresh list each time: botocore's generate_presigned_post appends to the list it is given."""
    return policy_conditions("audio/wav", 1_048_576)


def freeze_botocore_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """botocore reads its clock in two places for a POST policy; both see ``at`` (naive UTC)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: at)
    monkeypatch.setattr(botocore.signers, "get_current_datetime", lambda remove_tzinfo=True: at)


def botocore_client(region: str, endpoint: str | None, token: str | None) -> Any:
    addressing = "path" if endpoint else "auto"
    return boto3.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": addressing}),
    )


def reference_signature(credentials: ReadOnlyCredentials, region: str, fields: dict[str, str]) -> str:
    """botocore's uncached signature over the policy, for the time the fields say they were signed."""
    signed = SimpleNamespace(context={"timestamp": fields["x-amz-date"]})
    return str(S3SigV4PostAuth(credentials, "s3", region).signature(fields["policy"], signed))


def moment(at: datetime, expires_in: int) -> SigningMoment:
    """The signing moment of a naive-UTC botocore clock reading."""
    return signing_moment(int(at.replace(tzinfo=UTC).timestamp()), expires_in)


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(fields["policy"])))


@pytest.mark.parametrize(
    ("region", "endpoint", "token"),
    [
        ("us-east-1", "http://127.0.0.1:9000", None),
        ("eu-west-1", None, None),
        ("eu-central-1", None, "FQoGZXIvYXdzEXAMPLETOKEN"),
    ],
    ids=["custom-endpoint", "aws", "aws-temporary-credentials"],
)
@pytest.mark.parametrize(
    "at", [datetime(2026, 11, 24, 23, 59, 59), datetime(2026, 11, 25, 0, 0, 1)], ids=["day-1", "day-2"]
)
def test_fast_path_fields_equal_botocores_for_the_same_inputs_and_time(
    monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str | None, token: str | None, at: datetime
) -> None:
    """Every field and the decoded policy are botocore's, signed as botocore signs, on either side of midnight."""
    client = botocore_client(region, endpoint, token)
    target = PostTarget.from_botocore(client.generate_presigned_post(Bucket=BUCKET, Key="learn"))
    freeze_botocore_clock(monkeypatch, at)
    expected = client.generate_presigned_post(
        Bucket=BUCKET, Key=KEY, Fields=FIELDS, Conditions=conditions(), ExpiresIn=600
    )
    credentials = client._get_credentials().get_frozen_credentials()
    fields = sign_post(credentials, target, BUCKET, KEY, FIELDS, conditions(), moment(at, 600))
    assert target.url == expected["url"]
    assert list(fields) == list(expected["fields"])
    unsigned = {name for name in fields if name not in ("policy", "x-amz-signature")}
    assert {name: fields[name] for name in unsigned} == {name: expected["fields"][name] for name in unsigned}
    assert policy_of(fields) == policy_of(expected["fields"])  # the same policy, written compactly
    assert list(policy_of(fields)) == list(policy_of(expected["fields"]))
    assert fields["x-amz-signature"] == reference_signature(credentials, region, fields)
    if token:
        assert fields["x-amz-security-token"] == token
        assert {"x-amz-security-token": token} in policy_of(fields)["conditions"]


def test_fast_path_pins_bucket_key_type_and_size_in_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signed policy carries every condition the service asks for, then bucket and exact key."""
    at = datetime(2026, 11, 24, 12, 0, 0)
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
    freeze_botocore_clock(monkeypatch, at)
    fields = sign_post(
        credentials,
        PostTarget("https://example", "us-east-1"),
        BUCKET,
        KEY,
        FIELDS,
        conditions(),
        moment(at, 60),
    )
    policy = policy_of(fields)
    assert policy["expiration"] == "2026-11-24T12:01:00Z"
    assert policy["conditions"][:5] == [
        {"Content-Type": "audio/wav"},
        {"success_action_status": "201"},
        ["content-length-range", 1, 1_048_576],
        {"bucket": BUCKET},
        {"key": KEY},
    ]
    assert fields["x-amz-signature"] == reference_signature(credentials, "us-east-1", fields)


class RotatingCredentials:
    """An ECS-style container credentials endpoint that hands out new keys on every fetch."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.issued: list[ReadOnlyCredentials] = []

    async def credentials(self, request: Request) -> JSONResponse:
        n = next(self.counter)
        issued = ReadOnlyCredentials(f"ASIAROTATED{n:05d}", f"rotated-secret-{n}", f"rotated-token-{n}")
        self.issued.append(issued)
        # Five minutes left is inside botocore's mandatory refresh window: the next use refreshes.
        expiry = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return JSONResponse(
            {
                "AccessKeyId": issued.access_key,
                "SecretAccessKey": issued.secret_key,
                "Token": issued.token,
                "Expiration": expiry,
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/credentials", self.credentials)])


@pytest.fixture
def rotating_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RotatingCredentials]:
    """The default AWS credential chain, finding only the rotating container endpoint."""
    source = RotatingCredentials()
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with serve_asgi(lambda url: source.app()) as url:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/credentials")
        yield source


def storage_settings(s3: S3Endpoint, bucket: str, **extra: str) -> Any:
    return load_settings(
        {
            "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000",
            "SOUNDPOST_SESSION_SECRET": "s" * 40,
            "SOUNDPOST_PROVIDERS": "idp",
            "SOUNDPOST_PROVIDER_IDP_DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
            "SOUNDPOST_PROVIDER_IDP_CLIENT_ID": "soundpost",
            "SOUNDPOST_PROVIDER_IDP_CLIENT_SECRET": "soundpost-secret",
            "SOUNDPOST_S3_ENDPOINT": s3.url,
            "SOUNDPOST_S3_REGION": s3.region,
            "SOUNDPOST_S3_BUCKET": bucket,
            **extra,
        }
    )


def test_rotating_credentials_from_the_default_chain_sign_the_next_presign(
    rotating_credentials: RotatingCredentials, s3: S3Endpoint, bucket: str
) -> None:
    """Each presign freezes the provider's current credentials: after a rotation, the new key, token and secret sign."""

    async def presign_three_times() -> list[dict[str, str]]:
        async with open_storage(storage_settings(s3, bucket)) as storage:
            return [(await storage.presign_post(KEY, "audio/wav", 1000)).fields for _ in range(3)]

    posts = asyncio.run(presign_three_times())
    issued = rotating_credentials.issued
    assert len(issued) >= 3
    for fields in posts[1:]:  # the fast path, after botocore's first answer
        used = next(c for c in issued if fields["x-amz-credential"].startswith(c.access_key + "/"))
        assert fields["x-amz-security-token"] == used.token
        assert {"x-amz-security-token": used.token} in policy_of(fields)["conditions"]
        assert fields["x-amz-signature"] == reference_signature(used, s3.region, fields)
    keys_used = [fields["x-amz-credential"].split("/")[0] for fields in posts]
    assert len(set(keys_used)) == 3


def test_configured_session_token_rides_in_fields_and_policy_on_the_fast_path(
    s3: S3Endpoint, bucket: str
) -> None:
    """Temporary credentials from the settings put their token in the form and in the signed policy."""
    settings = storage_settings(
        s3,
        bucket,
        SOUNDPOST_S3_ACCESS_KEY_ID="ASIATEMPORARY",
        SOUNDPOST_S3_SECRET_ACCESS_KEY="temporary-secret",
        SOUNDPOST_S3_SESSION_TOKEN="temporary-token",
    )

    async def presign_twice() -> list[dict[str, str]]:
        async with open_storage(settings) as storage:
            return [(await storage.presign_post(KEY, "audio/wav", 1000)).fields for _ in range(2)]

    slow, fast = asyncio.run(presign_twice())
    credentials = ReadOnlyCredentials("ASIATEMPORARY", "temporary-secret", "temporary-token")
    assert fast["x-amz-security-token"] == "temporary-token"
    assert {"x-amz-security-token": "temporary-token"} in policy_of(fast)["conditions"]
    assert fast["x-amz-signature"] == reference_signature(credentials, s3.region, fast)
    assert set(fast) == set(slow)


def test_fast_path_posts_upload_to_s3_like_botocores(
    alice: httpx.Client, s3: S3Endpoint, bucket: str
) -> None:
    """The first presign (botocore's) and the later ones (fast path) both store the file under their key."""
    with s3_admin(s3) as admin:
        for attempt in range(3):
            body = alice.post(
                "/api/upload/presigned-url",
                json={"filename": f"take{attempt}.wav", "contentType": "audio/wav"},
            ).json()
            stored = httpx.post(
                body["url"], data=body["fields"], files={"file": ("take.wav", b"RIFF0000WAVE", "audio/wav")}
            )
            assert stored.status_code == 201, stored.text
            head = admin.head_object(Bucket=bucket, Key=body["key"])
            assert head["ContentType"] == "audio/wav"
            assert head["ContentLength"] == 12
