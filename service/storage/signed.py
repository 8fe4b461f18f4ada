"""S3 requests signed with SigV4 and sent on one aiohttp session: the hot calls without botocore's per-call work.

botocore spends about 2 ms of CPU on each call (its endpoint rules, event hooks,
request objects, and a parser that walks the operation's model for every field),
and a promotion makes nine; the event loop waits for each. What a HEAD, GET, PUT,
DELETE, copy or listing of one bucket needs is small: a path, a few headers, a
SigV4 signature (the signing key derived once a day, as ``service.core.post_policy``
does) and a status, some headers and a body back. Where to send it (the bucket's
URL, path- or host-style, and its region) is learnt once from botocore itself, so
every endpoint decision stays botocore's. Errors become botocore's ``ClientError``
and ``EndpointConnectionError`` shapes, after botocore's standard mode's retries,
so ``storage.errors`` classifies them as it classifies every other call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import botocore.exceptions
from botocore.credentials import ReadOnlyCredentials
from multidict import CIMultiDictProxy
from yarl import URL

from service.core.post_policy import ALGORITHM, keyed_signer, signing_moment

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Our records and listing pages are far smaller; a bigger answer is not one of them.
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
class BucketTarget:
    """Where a bucket's requests go and how they are scoped: fixed for a client and bucket."""

    origin: str  # scheme://host[:port]
    host: str  # the Host header as signed
    path: str  # /bucket (path style) or / (host style), URI-encoded
    region: str
    service: str

    @classmethod
    def from_presigned(cls, url: str) -> BucketTarget:
        """Learn the target from botocore's presigned ListObjectsV2 URL for the bucket."""
        parts = urlsplit(url)
        credential = parse_qs(parts.query)["X-Amz-Credential"][0]
        _, _, region, service, _ = credential.rsplit("/", 4)
        return cls(f"{parts.scheme}://{parts.netloc}", parts.netloc, parts.path or "/", region, service)

    def object_path(self, key: str) -> str:
        """The URI-encoded path of ``key`` in the bucket, as signed and as sent."""
        return f"{self.path.rstrip('/')}/{quote(key, safe='/-_.~')}"


def proxy_for(origin: str) -> str | None:
    """The proxy botocore would use for ``origin`` (HTTPS_PROXY / HTTP_PROXY unless NO_PROXY names it)."""
    parts = urlsplit(origin)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def encode(value: str) -> str:
    """SigV4's URI encoding: everything but RFC 3986's unreserved characters, ``/`` included."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """A query as SigV4 signs it: names sorted, names and values encoded."""
    return "&".join(f"{encode(name)}={encode(value)}" for name, value in sorted(params.items()))


def signed_headers(
    target: BucketTarget,
    method: str,
    path: str,
    query: str,
    credentials: ReadOnlyCredentials,
    epoch_second: int,
    headers: Mapping[str, str] | None = None,
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """``headers`` (lower-case names) plus what SigV4 adds, every one of them signed."""
    moment = signing_moment(epoch_second, 0)
    signed = {
        **(headers or {}),
        "host": target.host,
        "x-amz-content-sha256": payload_sha256,
        "x-amz-date": moment.amz_date,
    }
    if credentials.token is not None:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical = "\n".join(
        (
            method,
            path,
            query,
            *(f"{name}:{' '.join(signed[name].split())}" for name in names),
            "",
            ";".join(names),
            payload_sha256,
        )
    )
    scope = f"{moment.day}/{target.region}/{target.service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{moment.amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = keyed_signer(credentials.secret_key, moment.day, target.region, target.service).copy()
    signature.update(to_sign.encode())
    signed["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature.hexdigest()}"
    )
    return signed


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def client_error(status: int, body: bytes, operation: str) -> botocore.exceptions.ClientError:
    """An error answer as botocore would raise it: its Code and Message, or the bare status (HEAD has no body)."""
    code, message = str(status), ""
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - the store's answer, parsed as botocore parses it
        fields = {local(child.tag): child.text or "" for child in root}
        code, message = fields.get("Code") or code, fields.get("Message", "")
    except ElementTree.ParseError:
        pass
    answer: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(answer, operation)


def error_inside(body: bytes) -> bool:
    """A 200 whose body is an <Error>: how S3 reports a CopyObject that failed after it began answering."""
    start = body.lstrip()[:200]
    return b"<Error>" in start and b"<CopyObjectResult" not in start


class Answer(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class SignedRequests:
    """Sends signed requests to one bucket on one session; what fails is raised as botocore would raise it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: BucketTarget,
        credentials: Callable[[], Awaitable[ReadOnlyCredentials]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.target = target
        self.credentials = credentials  # frozen credentials, asked for per call (rotation, refresh)
        self.clock = clock
        self.proxy = proxy_for(target.origin)

    async def send(
        self,
        operation: str,
        method: str,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Answer:
        """A 2xx answer, tried twice on what botocore's standard mode retries; anything else raised."""
        url = URL(
            f"{self.target.origin}{path}?{query}" if query else f"{self.target.origin}{path}", encoded=True
        )
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        for attempt in range(ATTEMPTS):
            last = attempt + 1 == ATTEMPTS
            try:
                answer = await self.exchange(method, url, path, query, headers, body, payload)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if last:
                    raise botocore.exceptions.EndpointConnectionError(endpoint_url=str(url)) from exc
            else:
                status = answer.status
                if status < 300 and operation == "CopyObject" and error_inside(answer.body):
                    status = 500  # as botocore takes it: a failure of the store's, worth one more try
                elif 200 <= status < 300:
                    return answer
                error = client_error(status, answer.body, operation)
                if last or not (status >= 500 or error.response["Error"]["Code"] in RETRIED_CODES):
                    raise error
            await asyncio.sleep(random.uniform(0, 0.5))  # noqa: S311 - jitter, not a secret
        raise AssertionError("unreachable")  # pragma: no cover

    async def exchange(
        self,
        method: str,
        url: URL,
        path: str,
        query: str,
        headers: Mapping[str, str] | None,
        body: bytes,
        payload: str,
    ) -> Answer:
        credentials = await self.credentials()
        signed = signed_headers(
            self.target, method, path, query, credentials, int(self.clock()), headers, payload
        )
        signed["Accept-Encoding"] = "identity"  # the bytes as stored, never recompressed on the way
        async with self.session.request(
            method, url, headers=signed, data=body or None, allow_redirects=False, proxy=self.proxy
        ) as response:
            chunks, size = [], 0
            async for chunk in response.content.iter_any():  # read to the end: the connection is kept
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise aiohttp.ClientPayloadError("the store's answer is larger than any we ask for")
                chunks.append(chunk)
            return Answer(response.status, response.headers, b"".join(chunks))
