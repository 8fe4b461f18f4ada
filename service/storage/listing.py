"""ListObjectsV2 signed and read without botocore's per-call work: a listing page is the service's hottest read.

botocore spends about 4 ms of CPU on one ListObjectsV2 of 150 objects (its
endpoint rules, event hooks, request objects, and a parser that walks the
operation's model for every field), where the request itself is one signed GET
and its answer a flat XML list. This module signs that GET with SigV4 (the
signing key derived once a day, as ``service.core.post_policy`` does), sends it
on one aiohttp session, and reads the XML with ElementTree: the same objects
botocore would give (keys URL-decoded, ETags as sent, times as
``storage.client.timestamp`` parses them). Where to send it (the bucket's URL,
path- or host-style, and its region) is learnt once from botocore itself, so
every endpoint decision stays botocore's. Errors become botocore's ``ClientError``
shape, so ``storage.errors`` classifies them as it classifies every other call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

import aiohttp
import botocore.exceptions
from botocore.credentials import ReadOnlyCredentials
from yarl import URL

from service.core.post_policy import ALGORITHM, keyed_signer, signing_moment

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A page of at most 1,000 keys is well under this; a bigger answer is not a listing.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# What botocore's "standard" retry mode retries, with the client's two attempts (storage.client.RETRIES).
RETRIED_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalError",
        "RequestTimeout",
    }
)
ATTEMPTS = 2


@dataclass(frozen=True)
class ListTarget:
    """Where a bucket's ListObjectsV2 goes and how it is scoped: fixed for a client and bucket."""

    origin: str  # scheme://host[:port]
    host: str  # the Host header as signed
    path: str  # /bucket (path style) or / (host style), URI-encoded
    region: str
    service: str

    @classmethod
    def from_presigned(cls, url: str) -> ListTarget:
        """Learn the target from botocore's presigned ListObjectsV2 URL for the bucket."""
        parts = urlsplit(url)
        credential = parse_qs(parts.query)["X-Amz-Credential"][0]
        _, _, region, service, _ = credential.rsplit("/", 4)
        return cls(f"{parts.scheme}://{parts.netloc}", parts.netloc, parts.path or "/", region, service)


def encode(value: str) -> str:
    """SigV4's URI encoding: everything but RFC 3986's unreserved characters, ``/`` included."""
    return quote(value, safe="-_.~")


def signed_headers(
    target: ListTarget, query: str, credentials: ReadOnlyCredentials, epoch_second: int
) -> dict[str, str]:
    """The headers of a SigV4-signed GET of ``target.path?query`` (``query`` already canonical)."""
    moment = signing_moment(epoch_second, 0)
    headers = {"host": target.host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": moment.amz_date}
    if credentials.token is not None:
        headers["x-amz-security-token"] = credentials.token
    names = ";".join(headers)  # already in sorted order
    canonical = "\n".join(
        ("GET", target.path, query, *(f"{k}:{v}" for k, v in headers.items()), "", names, EMPTY_SHA256)
    )
    scope = f"{moment.day}/{target.region}/{target.service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{moment.amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = keyed_signer(credentials.secret_key, moment.day, target.region, target.service).copy()
    signature.update(to_sign.encode())
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature.hexdigest()}"
    )
    return headers


def list_query(prefix: str, limit: int, start_after: str | None) -> str:
    """The canonical (sorted, encoded) query of one ListObjectsV2 page, keys URL-encoded in the answer."""
    params = {"encoding-type": "url", "list-type": "2", "max-keys": str(limit), "prefix": prefix}
    if start_after:
        params["start-after"] = start_after
    return "&".join(f"{name}={encode(value)}" for name, value in sorted(params.items()))


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


# One listed object as the answer states it: key (URL-decoded), size, ETag, last-modified time.
Entry = tuple[str, str, str, str]


@dataclass(frozen=True)
class Page:
    """One answer: its objects, and whether more follow."""

    contents: list[Entry]
    truncated: bool


def parse_page(body: bytes) -> Page:
    """The objects of a ListObjectsV2 answer (keys URL-decoded, as botocore decodes them)."""
    root = ElementTree.fromstring(body)  # noqa: S314 - the store's answer, parsed as botocore parses it
    space = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    contents_tag, truncated_tag = space + "Contents", space + "IsTruncated"
    key_tag, size_tag, etag_tag, time_tag = (space + name for name in ("Key", "Size", "ETag", "LastModified"))
    contents: list[Entry] = []
    truncated = False
    for element in root:
        tag = element.tag
        if tag == contents_tag:
            find = element.findtext
            key = find(key_tag, "")
            size, etag, modified = find(size_tag, ""), find(etag_tag, ""), find(time_tag, "")
            if "%" in key or "+" in key:
                key = unquote_plus(key)
            contents.append((key, size, etag, modified))
        elif tag == truncated_tag:
            truncated = (element.text or "").strip() == "true"
    return Page(contents, truncated)


def client_error(status: int, body: bytes) -> botocore.exceptions.ClientError:
    """An error answer as botocore would raise it: its Code and Message, or the bare status."""
    code, message = str(status), ""
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - as above
        fields = {local(child.tag): child.text or "" for child in root}
        code, message = fields.get("Code") or code, fields.get("Message", "")
    except ElementTree.ParseError:
        pass
    answer: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(answer, "ListObjectsV2")


class Lister:
    """Sends signed ListObjectsV2 GETs on one session; what fails is raised as botocore would raise it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: ListTarget,
        credentials: Callable[[], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.target = target
        self.credentials = credentials  # awaitable of frozen ReadOnlyCredentials, per call (rotation)
        self.clock = clock

    async def page(self, prefix: str, limit: int, start_after: str | None) -> Page:
        """One page, tried twice on what botocore's standard mode retries."""
        query = list_query(prefix, limit, start_after)
        url = URL(f"{self.target.origin}{self.target.path}?{query}", encoded=True)
        for attempt in range(ATTEMPTS):
            last = attempt + 1 == ATTEMPTS
            try:
                status, body = await self.get(url, query)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if last:
                    raise botocore.exceptions.EndpointConnectionError(endpoint_url=str(url)) from exc
            else:
                if status == 200:
                    try:
                        return parse_page(body)
                    except ElementTree.ParseError:
                        status, body = 502, b"<Error><Code>UnreadableListing</Code></Error>"
                error = client_error(status, body)
                if last or not (status >= 500 or error.response["Error"]["Code"] in RETRIED_CODES):
                    raise error
            await asyncio.sleep(random.uniform(0, 0.5))  # noqa: S311 - jitter, not a secret
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, url: URL, query: str) -> tuple[int, bytes]:
        credentials = await self.credentials()
        headers: Mapping[str, str] = signed_headers(self.target, query, credentials, int(self.clock()))
        async with self.session.get(url, headers=headers, allow_redirects=False) as response:
            chunks, size = [], 0
            async for chunk in response.content.iter_any():  # read to the end: the connection is kept
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise aiohttp.ClientPayloadError("the store's listing answer is larger than any listing")
                chunks.append(chunk)
            return response.status, b"".join(chunks)
