"""The browser POST policy: what it pins, that it is signed right, and that a real S3 enforces it.

Presigning goes through the service's own ``Storage`` built by ``open_storage(load_settings(env))``.
The signature is checked with an independent SigV4 (``tests/support/sigv4.py``), uploads go over
HTTP as a browser sends them, and enforcement is proved against radosgw (and MinIO when one is
configured), because moto stores whatever it is sent without checking the policy.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import secrets
import time
from calendar import timegm
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest

from service import devstack
from service.core import keys
from service.devstack import S3Endpoint
from service.settings import Settings, load_settings
from service.storage.client import PresignedPost, open_storage
from tests.support import sigv4
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import new_bucket, object_keys, stored_object
from tests.support.settings import s3_settings

pytestmark = pytest.mark.peers  # real servers started by the tests themselves

CONTENT_TYPE = "audio/mpeg"
MAX_BYTES = 1024
AUDIO = b"ID3\x04\x00" + bytes(range(256)) * 3  # 773 bytes: within [1, MAX_BYTES]
OWNER = keys.user_id("dev", "alice")
MINIO_ENV = (
    "SOUNDPOST_TEST_MINIO_ENDPOINT",
    "SOUNDPOST_TEST_MINIO_ACCESS_KEY",
    "SOUNDPOST_TEST_MINIO_SECRET_KEY",
)


def environment(endpoint: S3Endpoint, bucket: str, **extra: str) -> dict[str, str]:
    """The SOUNDPOST_* settings of a service that presigns for ``bucket`` on ``endpoint``."""
    return {
        "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000",
        "SOUNDPOST_SESSION_SECRET": secrets.token_urlsafe(36),  # 48 characters
        "SOUNDPOST_PROVIDERS": "dev",
        "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost-test",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "soundpost-test-secret",
        **s3_settings(endpoint, bucket),
        **{f"SOUNDPOST_{name}": value for name, value in extra.items()},
    }


def new_key(filename: str = "take-1.mp3") -> str:
    return keys.build_key("uploads/", OWNER, keys.new_upload_id(), filename)


def presign(settings: Settings, key: str, content_type: str = CONTENT_TYPE) -> PresignedPost:
    """A presigned POST made by the service's own Storage, as the presign endpoint makes it."""

    async def run() -> PresignedPost:
        async with open_storage(settings) as storage:
            # A Storage's first presign goes through botocore's generate_presigned_post and
            # teaches the fast path; every later one (all but one request per process) is
            # the fast path, so that is the one these tests hold to account.
            await storage.presign_post(key, content_type, MAX_BYTES)
            return await storage.presign_post(key, content_type, MAX_BYTES)

    return asyncio.run(run())


def send(post: PresignedPost, fields: dict[str, str] | None = None, body: bytes = AUDIO) -> httpx.Response:
    """POST the form as a browser does: multipart, the fields first and the file last."""
    form = post.fields if fields is None else fields
    return httpx.post(post.url, data=form, files={"file": ("take-1.mp3", body, CONTENT_TYPE)}, timeout=10)


def conditions_as_text(policy: dict[str, Any]) -> list[str]:
    """The policy's conditions in a canonical, order-free form, for comparing as a whole."""
    return sorted(repr(condition) for condition in policy["conditions"])


def recomputed_signature(settings: Settings, fields: dict[str, str]) -> str:
    """The signature the form's policy should carry, computed without botocore."""
    date = fields["x-amz-date"][:8]
    return sigv4.policy_signature(
        str(settings.s3_secret_access_key), date, settings.s3_region, fields["policy"]
    )


def epoch(timestamp: str, layout: str) -> int:
    return timegm(time.strptime(timestamp, layout))


# --- the independent SigV4 -----------------------------------------------------------------------


def test_sigv4_reproduces_the_signature_of_aws_documented_post_example() -> None:
    """The test-side SigV4 gives the signature AWS documents for its POST policy example."""
    policy = (  # https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-post-example.html
        "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7"
        "ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91"
        "c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3Qi"
        "OiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwi"
        "fSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRh"
        "LXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVT"
        "MjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNy"
        "ZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9"
        "LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAi"
        "MjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9"
    )
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert sigv4.policy_signature(secret, "20151229", "us-east-1", policy) == (
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
    )
    assert sigv4.decode_policy(policy)["expiration"] == "2015-12-30T12:00:00.000Z"


# --- what the policy pins (presigned by the service, against moto's server) ------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[S3Endpoint]:
    """moto's S3 in server mode: stores what it is sent, checks no policy (so proves none)."""
    with devstack.moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def settings(moto_endpoint: S3Endpoint) -> Settings:
    return load_settings(environment(moto_endpoint, "soundpost-policy"))


def test_policy_pins_exactly_bucket_key_type_size_status_and_credentials(settings: Settings) -> None:
    """The policy holds exactly: bucket, exact key and type, [1, max] bytes, 201, the credentials."""
    key = new_key()
    post = presign(settings, key)
    policy = sigv4.decode_policy(post.fields["policy"])
    date = post.fields["x-amz-date"]
    assert conditions_as_text(policy) == conditions_as_text(
        {
            "conditions": [
                {"bucket": "soundpost-policy"},
                {"key": key},
                {"Content-Type": CONTENT_TYPE},
                ["content-length-range", 1, MAX_BYTES],
                {"success_action_status": "201"},
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": f"{settings.s3_access_key_id}/{date[:8]}/us-east-1/s3/aws4_request"},
                {"x-amz-date": date},
            ]
        }
    )
    assert abs(epoch(date, "%Y%m%dT%H%M%SZ") - time.time()) < 60
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in policy["conditions"])


@pytest.mark.parametrize("ttl", [None, 300])
def test_policy_expires_presign_ttl_seconds_from_now(moto_endpoint: S3Endpoint, ttl: int | None) -> None:
    """The policy expires presign_ttl seconds (minutes, not hours) after presigning, as reported."""
    extra = {} if ttl is None else {"PRESIGN_TTL": str(ttl)}
    settings = load_settings(environment(moto_endpoint, "soundpost-policy", **extra))
    before = time.time()
    post = presign(settings, new_key())
    after = time.time()
    expiration = epoch(sigv4.decode_policy(post.fields["policy"])["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert settings.presign_ttl == (600 if ttl is None else ttl)
    assert before + settings.presign_ttl - 1 <= expiration <= after + settings.presign_ttl
    assert abs(post.expires_at.timestamp() - expiration) <= 1


def test_form_fields_carry_exactly_the_values_the_policy_pins(settings: Settings) -> None:
    """Every exact condition but bucket (which is in the URL) is a form field with that value, and no more."""
    post = presign(settings, new_key())
    policy = sigv4.decode_policy(post.fields["policy"])
    pinned = {name: value for c in policy["conditions"] if isinstance(c, dict) for name, value in c.items()}
    del pinned["bucket"]
    signed = {name: value for name, value in post.fields.items() if name not in ("policy", "x-amz-signature")}
    assert signed == pinned


def test_signature_is_sigv4_of_the_policy_with_the_configured_secret(settings: Settings) -> None:
    """x-amz-signature equals an independent SigV4 over the base64 policy; one changed byte changes it."""
    post = presign(settings, new_key())
    assert recomputed_signature(settings, post.fields) == post.fields["x-amz-signature"]

    document = base64.b64decode(post.fields["policy"])
    # one byte: the size limit 1024 becomes 9024
    tampered = document.replace(b'"content-length-range",1,1024]', b'"content-length-range",1,9024]')
    assert (
        len(tampered) == len(document) and sum(a != b for a, b in zip(tampered, document, strict=False)) == 1
    )
    forged = {**post.fields, "policy": base64.b64encode(tampered).decode()}
    assert recomputed_signature(settings, forged) != post.fields["x-amz-signature"]


def test_session_token_is_sent_and_pinned_by_the_policy(moto_endpoint: S3Endpoint) -> None:
    """With temporary credentials, x-amz-security-token is a form field and an exact policy condition."""
    token = "FQoGZXIvYXdzEXAMPLE" + secrets.token_urlsafe(24)
    settings = load_settings(environment(moto_endpoint, "soundpost-policy", S3_SESSION_TOKEN=token))
    post = presign(settings, new_key())
    policy = sigv4.decode_policy(post.fields["policy"])
    assert post.fields["x-amz-security-token"] == token
    assert {"x-amz-security-token": token} in policy["conditions"]
    assert recomputed_signature(settings, post.fields) == post.fields["x-amz-signature"]


def test_form_url_is_path_style_on_the_browser_visible_endpoint(moto_endpoint: S3Endpoint) -> None:
    """The form posts to {public endpoint}/{bucket}, not to the endpoint the server itself uses."""
    public = "http://localhost:9000"
    env = environment(moto_endpoint, "soundpost-policy", S3_PUBLIC_ENDPOINT=public)
    assert env["SOUNDPOST_S3_ENDPOINT"] != public
    assert presign(load_settings(env), new_key()).url == f"{public}/soundpost-policy"


# --- a real upload, to moto's server over HTTP ------------------------------------------------------


def test_upload_to_moto_stores_the_exact_bytes_and_content_type(moto_endpoint: S3Endpoint) -> None:
    """The presigned form, posted with the file last, answers 201 and stores the bytes and type as sent."""
    bucket = new_bucket(moto_endpoint)
    key = new_key()
    post = presign(load_settings(environment(moto_endpoint, bucket)), key)
    answer = send(post)
    assert answer.status_code == 201, answer.text
    assert stored_object(moto_endpoint, bucket, key) == (AUDIO, CONTENT_TYPE)


# --- enforcement by a real S3 -----------------------------------------------------------------------


def enforcing_targets() -> list[str]:
    """radosgw always; MinIO too when one is configured (read at collection time)."""
    return ["rgw", *(["minio"] if all(os.environ.get(name) for name in MINIO_ENV) else [])]


@pytest.fixture(scope="module", params=enforcing_targets())
def enforcing_s3(request: pytest.FixtureRequest) -> S3Endpoint:
    """An S3 that checks policies: the session's radosgw, or the configured MinIO (path-style)."""
    if request.param == "rgw":
        endpoint: S3Endpoint = request.getfixturevalue("rgw_endpoint")
        return endpoint
    url, access_key, secret_key = (os.environ[name] for name in MINIO_ENV)
    return S3Endpoint(url.rstrip("/"), access_key, secret_key, "us-east-1")


@dataclass(frozen=True)
class Attempt:
    """One upload presigned by the service into a bucket of its own on an enforcing S3."""

    endpoint: S3Endpoint
    settings: Settings
    key: str
    post: PresignedPost

    @classmethod
    def presigned(cls, endpoint: S3Endpoint, filename: str = "take-1.mp3") -> Attempt:
        settings = load_settings(environment(endpoint, new_bucket(endpoint)))
        key = new_key(filename)
        return cls(endpoint, settings, key, presign(settings, key))

    def presigned_again(self, **changed_settings: Any) -> PresignedPost:
        """The same key presigned by Storage again, with some settings changed past validation."""
        return presign(dataclasses.replace(self.settings, **changed_settings), self.key)

    def fields_with(self, **changed: str) -> dict[str, str]:
        return {**self.post.fields, **changed}

    def assert_refused(self, answer: httpx.Response, status: int) -> None:
        """The form was refused with ``status`` and nothing landed in the bucket."""
        assert answer.status_code == status, (answer.status_code, answer.text)
        assert object_keys(self.endpoint, self.settings.s3_bucket) == []

    def assert_valid_form_lands(self) -> None:
        """The form as presigned is accepted, and its object is then the only one in the bucket."""
        answer = send(self.post)
        assert answer.status_code == 201, answer.text
        assert object_keys(self.endpoint, self.settings.s3_bucket) == [self.key]
        assert stored_object(self.endpoint, self.settings.s3_bucket, self.key) == (AUDIO, CONTENT_TYPE)


def test_s3_stores_a_valid_upload(enforcing_s3: S3Endpoint) -> None:
    """The form exactly as presigned lands: 201, the only object, with its bytes and Content-Type."""
    Attempt.presigned(enforcing_s3).assert_valid_form_lands()


@pytest.mark.parametrize("name", ["café déjà vu.mp3", "日本語の録音.mp3"])
def test_s3_stores_an_upload_under_a_key_that_is_not_ascii(enforcing_s3: S3Endpoint, name: str) -> None:
    """Keys keep letters of any script, and the policy's exact key still matches the UTF-8 form field."""
    attempt = Attempt.presigned(enforcing_s3, keys.safe_filename(name, ".mp3"))
    assert not attempt.key.isascii()
    attempt.assert_valid_form_lands()


# Each refusal below changes one thing in a valid form; the unchanged form then lands, alone,
# so the refusal is due to that one change and the refused upload left nothing behind.


def test_s3_refuses_a_body_over_the_size_limit(enforcing_s3: S3Endpoint) -> None:
    """A file one byte over the policy's maximum is refused with 400 EntityTooLarge."""
    attempt = Attempt.presigned(enforcing_s3)
    answer = send(attempt.post, body=AUDIO + bytes(MAX_BYTES + 1 - len(AUDIO)))
    attempt.assert_refused(answer, 400)
    assert "EntityTooLarge" in answer.text
    attempt.assert_valid_form_lands()


def test_s3_refuses_an_empty_file(enforcing_s3: S3Endpoint) -> None:
    """An empty file is under the policy's minimum of one byte and is refused."""
    attempt = Attempt.presigned(enforcing_s3)
    attempt.assert_refused(send(attempt.post, body=b""), 400)
    attempt.assert_valid_form_lands()


def test_s3_refuses_a_content_type_other_than_the_signed_one(enforcing_s3: S3Endpoint) -> None:
    """Changing the Content-Type field (to another audio type) breaks the policy and is refused."""
    attempt = Attempt.presigned(enforcing_s3)
    attempt.assert_refused(send(attempt.post, attempt.fields_with(**{"Content-Type": "audio/wav"})), 403)
    attempt.assert_valid_form_lands()


def test_s3_refuses_a_key_other_than_the_signed_one(enforcing_s3: S3Endpoint) -> None:
    """A form that names another key, even one under the same user's prefix, is refused."""
    attempt = Attempt.presigned(enforcing_s3)
    other_key = attempt.key.replace("take-1", "take-2")
    attempt.assert_refused(send(attempt.post, attempt.fields_with(key=other_key)), 403)
    attempt.assert_valid_form_lands()


def test_s3_refuses_an_expired_policy(enforcing_s3: S3Endpoint) -> None:
    """The same form presigned with a lifetime of -60 s (expired a minute ago) is refused."""
    attempt = Attempt.presigned(enforcing_s3)
    # presign_ttl below 30 s cannot pass load_settings, so it is replaced on the loaded settings
    attempt.assert_refused(send(attempt.presigned_again(presign_ttl=-60)), 403)
    attempt.assert_valid_form_lands()


def test_s3_refuses_a_tampered_signature(enforcing_s3: S3Endpoint) -> None:
    """A signature with one hex digit changed is refused with 403."""
    attempt = Attempt.presigned(enforcing_s3)
    signature = attempt.post.fields["x-amz-signature"]
    tampered = ("0" if signature[0] != "0" else "1") + signature[1:]
    attempt.assert_refused(send(attempt.post, attempt.fields_with(**{"x-amz-signature": tampered})), 403)
    attempt.assert_valid_form_lands()
