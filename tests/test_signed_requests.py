"""The hot S3 calls without botocore: botocore's signature, botocore's answers, S3's refusals as ours."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

import botocore.auth
import botocore.config
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from service import devstack
from service.settings import load_settings
from service.storage import listing, signed
from service.storage.client import Storage, open_storage
from service.storage.errors import NotFound, PreconditionFailed, StorageRefused, StorageUnavailable
from tests.support.rgw import rgw_endpoint  # noqa: F401 - fixture
from tests.support.s3 import AWKWARD_NAMES, store_bucket
from tests.support.s3_errors import RefusingS3, error_xml
from tests.support.settings import MINIMAL_SETTINGS, s3_settings

CREDENTIALS = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
AT = datetime(2026, 12, 7, 6, 30, 15, tzinfo=UTC)
PATH_STYLE = signed.BucketTarget("http://127.0.0.1:9000", "127.0.0.1:9000", "/soundpost", "us-east-1", "s3")
HOST_STYLE = signed.BucketTarget(
    "https://soundpost.s3.eu-west-3.amazonaws.com",
    "soundpost.s3.eu-west-3.amazonaws.com",
    "/",
    "eu-west-3",
    "s3",
)


def botocore_signature(
    target: signed.BucketTarget,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    credentials: ReadOnlyCredentials,
) -> tuple[str, str]:
    """botocore's own SigV4 (scope and signature, signed header names) for the same request at the same second."""
    request = AWSRequest(method=method, url=f"{target.origin}{path}", headers=dict(headers), data=body)
    request.context["client_config"] = botocore.config.Config(s3={"payload_signing_enabled": True})
    request.context["timestamp"] = AT.strftime("%Y%m%dT%H%M%SZ")
    signer = botocore.auth.S3SigV4Auth(credentials, target.service, target.region)
    signer._modify_request_before_signing(request)  # add_auth, without reading its clock
    canonical = signer.canonical_request(request)
    to_sign = signer.string_to_sign(request, canonical)
    return f"{signer.scope(request)}|{signer.signature(to_sign, request)}", signer.signed_headers(
        signer.headers_to_sign(request)
    )


REQUESTS = {
    "head": ("HEAD", {}, b""),
    "create-only record": ("PUT", {"content-type": "application/json", "if-none-match": "*"}, b'{"a": 1}'),
    "copy with facts": (
        "PUT",
        {
            "content-type": "audio/webm",
            "x-amz-copy-source": "soundpost/uploads/staging/u/01/caf%C3%A9.webm",
            "x-amz-copy-source-if-match": '"9b2cf535f27731c974343645a3985328"',
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-meta-duration-seconds": "61.02",
        },
        b"",
    ),
    "ranged get": ("GET", {"range": "bytes=0-4095"}, b""),
}


@pytest.mark.parametrize("target", [PATH_STYLE, HOST_STYLE], ids=["path-style", "host-style"])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEB4aDK+token/with=chars"], ids=["keys", "session"])
@pytest.mark.parametrize("name", list(REQUESTS))
def test_an_object_request_is_signed_as_botocore_signs_it(
    target: signed.BucketTarget, token: str | None, name: str
) -> None:
    """Same request, same second: the same scope, signature and signed headers as botocore's S3SigV4Auth."""
    method, headers, body = REQUESTS[name]
    credentials = ReadOnlyCredentials(CREDENTIALS.access_key, CREDENTIALS.secret_key, token)
    path = target.object_path("uploads/library/u/01/take 1+%~ café.webm")
    payload = hashlib.sha256(body).hexdigest()
    ours = signed.signed_headers(target, method, path, "", credentials, int(AT.timestamp()), headers, payload)
    assert authorization(ours) == botocore_signature(target, method, path, headers, body, credentials)
    assert path.endswith("/uploads/library/u/01/take%201%2B%25~%20caf%C3%A9.webm")
    assert ("x-amz-security-token" in ours) == (token is not None)


@pytest.mark.parametrize("target", [PATH_STYLE, HOST_STYLE], ids=["path-style", "host-style"])
@pytest.mark.parametrize("start_after", [None, "uploads/library/u/01/café+1.wav"])
def test_a_listing_is_signed_as_botocore_signs_it(
    target: signed.BucketTarget, start_after: str | None
) -> None:
    """A ListObjectsV2 page's query (sorted, encoded: prefix and start-after with awkward characters) signs alike."""
    query = listing.list_query("uploads/library/u/ a+b~c=d&e/", 150, start_after)
    ours = signed.signed_headers(target, "GET", target.path, query, CREDENTIALS, int(AT.timestamp()))
    url_path = f"{target.path}?{query}"
    assert authorization(ours) == botocore_signature(target, "GET", url_path, {}, b"", CREDENTIALS)
    assert ours["host"] == target.host


def authorization(headers: dict[str, str]) -> tuple[str, str]:
    """(credential scope | signature, signed header names) of our Authorization header."""
    fields = dict(part.strip().split("=", 1) for part in headers["Authorization"].split(" ", 1)[1].split(","))
    return f"{fields['Credential']}|{fields['Signature']}", fields["SignedHeaders"]


async def lean_and_botocore(env: dict[str, str], scenario: Any) -> Any:
    """Run ``scenario(storage, lean)`` with the lean calls and with botocore's, on one Storage."""
    async with open_storage(load_settings(env)) as storage:
        session = storage.http
        return await scenario(storage, lambda on: setattr(storage, "http", session if on else None))


@pytest.mark.parametrize("store", ["moto", "radosgw"])
def test_every_object_call_does_what_botocore_does_on_a_real_store(
    store: str, s3: devstack.S3Endpoint, request: pytest.FixtureRequest
) -> None:
    """Written lean, read by botocore and the other way round, under awkward names; radosgw checks each signature."""
    env = {**MINIMAL_SETTINGS, **s3_settings(*store_bucket(store, s3, request))}

    async def scenario(storage: Storage, lean: Any) -> None:
        for index, name in enumerate(AWKWARD_NAMES):
            record, copy = f"uploads/records/{index:02d}/{name}.json", f"uploads/library/u/{index:02d}/{name}"
            lean(True)
            etag = await storage.put_record(record, b'{"n": %d}' % index)
            with pytest.raises(PreconditionFailed):
                await storage.put_record(record, b"{}")
            with pytest.raises(PreconditionFailed):
                await storage.put_record(record, b"{}", if_match='"0123456789abcdef0123456789abcdef"')
            facts = await storage.facts(record)
            copied = await storage.copy_verified(record, etag, copy, "audio/wav", {"upload-id": f"u{index}"})
            copy_facts, copied_bytes, got = (
                await storage.facts(copy),
                await storage.get_record(copy),
                await storage.get_record(record),
            )
            lean(False)
            assert await storage.get_record(record) == got
            assert got.body == b'{"n": %d}' % index and got.etag == etag
            assert await storage.facts(record) == facts and facts.size == len(got.body)
            assert await storage.facts(copy) == copy_facts
            assert copy_facts.content_type == "audio/wav" and copy_facts.metadata == {
                "upload-id": f"u{index}"
            }
            assert copied.strip('"') == copy_facts.etag.strip('"')
            assert copied_bytes == await storage.get_record(copy)
            assert copied_bytes.body == got.body
            replaced = await storage.put_record(record, b"[]", if_match=etag)
            lean(True)
            assert (await storage.get_record(record)).etag == replaced
            await storage.put_plain(record, b"{}")
            await storage.delete(copy)
            with pytest.raises(NotFound):
                await storage.facts(copy)
            with pytest.raises(NotFound):
                await storage.get_record(copy)
            lean(False)
            assert (await storage.get_record(record)).body == b"{}"
            with pytest.raises(NotFound):
                await storage.facts(copy)

    asyncio.run(lean_and_botocore(env, scenario))


def attempt(refusing: RefusingS3, url: str, call: Any) -> tuple[BaseException | None, int]:
    """What ``call(storage)`` raised against the refusing store, and how many requests it sent."""
    env = {
        **MINIMAL_SETTINGS,
        **s3_settings(devstack.S3Endpoint(url, "key", "secret", "us-east-1"), "bucket"),
    }

    async def run() -> tuple[BaseException | None, int]:
        async with open_storage(load_settings(env)) as storage:
            await storage.lean()  # learn the target first: the requests counted are the call's own
            before = refusing.requests
            try:
                await call(storage)
            except Exception as exc:
                return exc, refusing.requests - before
            return None, refusing.requests - before

    return asyncio.run(run())


def test_a_failing_store_is_retried_once_then_unavailable_and_a_refusal_names_its_fix() -> None:
    """503 and a CopyObject's 200 that carries an <Error> are tried twice, then StorageUnavailable; 403 is not retried."""
    refusing = RefusingS3()

    async def copy(storage: Storage) -> str:
        return await storage.copy_verified("a", '"e"', "b", "audio/wav", {})

    with refusing.serve() as url:
        refusing.error = (503, "SlowDown")
        failed, sent = attempt(refusing, url, lambda s: s.facts("uploads/a.wav"))
        assert isinstance(failed, StorageUnavailable) and sent == signed.ATTEMPTS
        refusing.error, refusing.body = None, error_xml("InternalError")
        failed, sent = attempt(refusing, url, copy)
        assert isinstance(failed, StorageUnavailable) and sent == signed.ATTEMPTS
        refusing.error, refusing.body = (403, "AccessDenied"), None
        failed, sent = attempt(refusing, url, lambda s: s.put_plain("uploads/r.json", b"{}"))
        assert isinstance(failed, StorageRefused) and failed.problem == "credentials_refused" and sent == 1
        refusing.error = (412, "PreconditionFailed")
        failed, sent = attempt(refusing, url, copy)
        assert isinstance(failed, PreconditionFailed) and sent == 1


@pytest.mark.parametrize(
    ("environment", "origin", "proxy"),
    [
        ({}, "https://s3.eu-west-3.amazonaws.com", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://s3.eu-west-3.amazonaws.com", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://minio:9000", None),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "minio"}, "http://minio:9000", None),
    ],
)
def test_the_store_is_reached_through_the_proxy_botocore_would_use(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], origin: str, proxy: str | None
) -> None:
    """The proxy environment variables apply to the lean calls as to botocore's: by scheme, NO_PROXY honoured."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert signed.proxy_for(origin) == proxy
