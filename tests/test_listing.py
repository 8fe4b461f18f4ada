"""Listings without botocore's per-call work: botocore's signature, botocore's objects, S3's errors as ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service import devstack
from service.settings import load_settings
from service.storage import listing, signed
from service.storage.client import open_storage
from service.storage.errors import StorageUnavailable
from tests.support.rgw import rgw_endpoint  # noqa: F401 - fixture
from tests.support.s3 import AWKWARD_NAMES, store_bucket
from tests.support.s3_errors import RefusingS3
from tests.support.settings import MINIMAL_SETTINGS, s3_settings


def test_an_answer_is_read_as_botocore_reads_it() -> None:
    """Keys URL-decoded, ETags with their quotes, the time as sent, truncation seen; no namespace is fine."""
    answer = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
        b"<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>"
        b"<Contents><Key>u/take+1%2B%25.wav</Key><LastModified>2026-12-07T06:30:15.000Z</LastModified>"
        b"<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>1024</Size>"
        b"<StorageClass>STANDARD</StorageClass></Contents>"
        b'<Contents><Size>7</Size><Key>u/plain.wav</Key><ETag>"x-2"</ETag>'
        b"<LastModified>2026-12-07T06:30:16Z</LastModified></Contents></ListBucketResult>"
    )
    page = listing.parse_page(answer)
    assert page.truncated
    assert page.contents == [
        ("u/take 1+%.wav", "1024", '"9b2cf535f27731c974343645a3985328"', "2026-12-07T06:30:15.000Z"),
        ("u/plain.wav", "7", '"x-2"', "2026-12-07T06:30:16Z"),
    ]
    bare = listing.parse_page(answer.replace(b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', b""))
    assert bare == page


async def both_listings(env: dict[str, str], prefix: str, limit: int, after: str | None) -> tuple[Any, Any]:
    """(what the service lists, what botocore lists) for the same page."""
    async with open_storage(load_settings(env)) as storage:
        ours = await storage.list_objects(prefix, limit, after)
        storage.http = None  # the same Storage, listing through botocore
        theirs = await storage.list_objects(prefix, limit, after)
    return ours, theirs


@pytest.mark.parametrize("store", ["moto", "radosgw"])
def test_a_page_lists_what_botocore_lists_on_a_real_store(
    store: str, s3: devstack.S3Endpoint, request: pytest.FixtureRequest
) -> None:
    """Awkward names, a page boundary and a start-after, against moto and radosgw (which checks signatures)."""
    endpoint, bucket = store_bucket(store, s3, request)
    admin = devstack.s3_admin(endpoint)
    prefix = "uploads/library/someone/"
    for index, name in enumerate(AWKWARD_NAMES):
        admin.put_object(Bucket=bucket, Key=f"{prefix}{index:02d}/{name}", Body=b"x" * (index + 1))
    env = {**MINIMAL_SETTINGS, **s3_settings(endpoint, bucket)}
    first, first_botocore = asyncio.run(both_listings(env, prefix, 4, None))
    assert first == first_botocore
    assert [o.key.rsplit("/", 1)[1] for o in first.objects] == AWKWARD_NAMES[:4]
    assert first.next_start_after == first.objects[-1].key
    rest, rest_botocore = asyncio.run(both_listings(env, prefix, 100, first.next_start_after))
    assert rest == rest_botocore
    assert [o.size for o in rest.objects] == [5, 6, 7] and rest.next_start_after is None


def test_an_unreadable_or_failing_answer_is_the_stores_fault_not_ours() -> None:
    """A 200 that is not XML, and a 503 after the retry, are StorageUnavailable (a 503 with a code), never a crash."""
    refusing = RefusingS3()
    with refusing.serve() as url:
        endpoint = devstack.S3Endpoint(url, "key", "secret", "us-east-1")
        env = {**MINIMAL_SETTINGS, **s3_settings(endpoint, "bucket")}

        async def listed() -> None:
            async with open_storage(load_settings(env)) as storage:
                await storage.list_objects("uploads/", 10)

        refusing.body = "<ListBucketResult><Contents><Key>half"
        with pytest.raises(StorageUnavailable):
            asyncio.run(listed())
        refusing.body = None
        refusing.error = (503, "SlowDown")
        before = refusing.requests
        with pytest.raises(StorageUnavailable):
            asyncio.run(listed())
        assert refusing.requests - before == signed.ATTEMPTS  # retried once, as botocore would
