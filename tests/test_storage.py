"""service.storage.client: narrow unit tests of paging logic, with an in-process stand-in for the S3 client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from service.settings import load_settings
from service.storage.client import Part, Storage, timestamp
from tests.support.settings import MINIMAL_SETTINGS


class PagedParts:
    """Answers ListParts two parts per page, as S3 does past 1,000 parts."""

    def __init__(self, total: int) -> None:
        self.parts: list[dict[str, Any]] = [
            {"PartNumber": n, "ETag": f'"{n}"', "Size": n * 10} for n in range(1, total + 1)
        ]
        self.markers: list[int] = []

    async def list_parts(self, *, PartNumberMarker: int, **_: Any) -> dict[str, Any]:
        self.markers.append(PartNumberMarker)
        page = [p for p in self.parts if p["PartNumber"] > PartNumberMarker][:2]
        more = page[-1]["PartNumber"] < len(self.parts) if page else False
        return {
            "Parts": page,
            "IsTruncated": more,
            "NextPartNumberMarker": page[-1]["PartNumber"] if page else 0,
        }


def test_list_parts_follows_every_page() -> None:
    """Five parts over three pages come back whole and in order."""
    settings = load_settings(MINIMAL_SETTINGS)
    s3 = PagedParts(5)
    stand_in: Any = s3  # only list_parts is called: a stand-in for aiobotocore's S3Client
    parts = asyncio.run(Storage(settings, stand_in, stand_in).list_parts("k", "u"))
    assert parts == [Part(n, f'"{n}"', n * 10) for n in range(1, 6)]
    assert s3.markers == [0, 2, 4]


def test_no_credentials_at_all_is_credentials_refused_naming_the_settings() -> None:
    """An empty default credential chain is the operator's to fix, like refused keys."""
    from botocore.exceptions import NoCredentialsError

    from service.http.handlers import storage_answer
    from service.storage.errors import classify

    fault = classify(NoCredentialsError(), "bucket")
    answer = storage_answer(fault)
    assert (answer.status, answer.code) == (502, "storage_credentials_refused")
    assert fault.advice.startswith("no S3 credentials were found: check SOUNDPOST_S3_ACCESS_KEY_ID")


def test_store_times_parse_to_the_same_instant_whichever_form_the_store_uses() -> None:
    """ISO 8601 as LIST answers (by the standard library), RFC 1123 as HEAD answers and epoch seconds (by botocore)."""
    instant = datetime(2026, 12, 7, 4, 4, 31, tzinfo=UTC)
    assert timestamp("2026-12-07T04:04:31.000Z") == instant
    assert timestamp("2026-12-07T04:04:31Z").utcoffset() == timedelta(0)
    assert timestamp("Mon, 07 Dec 2026 04:04:31 GMT") == instant
    assert timestamp(str(int(instant.timestamp()))) == instant
