"""S3 access: clients opened once for the life of the process, and presigning.

Two clients share one aioboto3 session. ``s3`` talks to the endpoint the server
reaches; ``signer`` is configured with the endpoint the *browser* reaches (they
differ under docker-compose, where the app sees ``minio:9000`` and the browser
sees ``localhost:9000``). Presigning is local computation, so ``signer`` never
opens a connection. The calls promotion and listing make on every upload and page
(HEAD, GET, PUT, DELETE, copy, ListObjectsV2) go out signed by ``storage.signed`` on
one aiohttp session instead, at about a third of botocore's CPU; a Storage made
without that session (tools, tests) makes them through botocore.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import ssl
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

import aioboto3
import aiobotocore.session
import aiohttp
import botocore.httpsession
import botocore.utils
import msgspec
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError, NoCredentialsError

from service.core.checksums import (
    PART_CHECKSUMS_METADATA,
    PART_CHECKSUMS_SHA256,
    declared_metadata,
    user_metadata,
)
from service.core.post_policy import PostTarget, sign_post, signing_moment
from service.settings import Settings
from service.storage import listing, signed
from service.storage.errors import (
    CREDENTIALS_REFUSED,
    REFUSALS,
    UNREACHABLE,
    PartsRejected,
    StorageError,
    StorageRefused,
    StorageUnavailable,
    classify,
    error_code,
    translated,
)

if (
    TYPE_CHECKING
):  # the stub package types aiobotocore's S3 client; at run time the client is built by aioboto3
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        ListMultipartUploadsRequestTypeDef,
        ListObjectsV2RequestTypeDef,
        PutObjectRequestTypeDef,
    )

logger = logging.getLogger("soundpost.storage")

# Few retries, and bounded waits (SOUNDPOST_S3_CONNECT_TIMEOUT, SOUNDPOST_S3_READ_TIMEOUT):
# a slow S3 must not hold requests for minutes.
RETRIES: dict[str, Any] = {"max_attempts": 2, "mode": "standard"}
# What a store without (multipart) checksums answers a CreateMultipartUpload that names an algorithm.
CHECKSUMS_REFUSED = frozenset({"InvalidArgument", "InvalidRequest", "NotImplemented", "NotSupported"})
# The lean calls' pool: 32 promotions at once each wait on one request at a time, with listings
# beside them; botocore's default of 10 would make them queue for a connection, not for the store.
LEAN_POOL_CONNECTIONS = 64


class PresignedPost(msgspec.Struct, frozen=True):
    """A Struct, not a dataclass: one is made per presign, and a frozen dataclass costs 7x more to make."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


class PresignedPut(msgspec.Struct, frozen=True):
    """A presigned PutObject: the browser sends exactly ``headers`` (all signed) with the file as the body."""

    url: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class Digest:
    """What one full read of an object found: its SHA-256 (base64) and its length."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class Chosen:
    """A part to assemble: its number, the ETag it was uploaded with, and its declared SHA-256, if any."""

    number: int
    etag: str
    sha256: str | None = None


@dataclass(frozen=True)
class Listing:
    keys: list[str]
    next_start_after: str | None


class Listed(NamedTuple):
    """One object as ListObjectsV2 describes it: enough to list a library without a HEAD per item.

    A named tuple: a listing page makes hundreds, and a frozen dataclass costs three times more to make.
    """

    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ObjectPage:
    objects: list[Listed]
    next_start_after: str | None


@dataclass(frozen=True)
class ObjectFacts:
    """HEAD's answer: what confirm and promotion check before trusting an object."""

    key: str
    size: int
    content_type: str
    last_modified: datetime
    etag: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Record:
    """A small JSON object of the service's own and the ETag that conditional writes name."""

    body: bytes
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str
    initiated: datetime


def policy_conditions(content_type: str, max_bytes: int) -> list[Any]:
    """What the POST policy pins besides bucket, key and credentials (which botocore adds)."""
    return [
        {"Content-Type": content_type},
        {"success_action_status": "201"},
        ["content-length-range", 1, max_bytes],
    ]


class Storage:
    def __init__(
        self,
        settings: Settings,
        s3: S3Client,
        signer: S3Client,
        credentials: Any = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self.s3 = s3
        self.signer = signer
        self.credentials = credentials  # the session's (and so both clients') credentials; None if none found
        self.bucket = settings.s3_bucket
        self.post_target: PostTarget | None = None
        self.http = http  # the hot calls' own session (service.storage.signed); None: botocore makes them
        self.requests: signed.SignedRequests | None = None
        # How browsers upload simple files: settled at start-up by service.storage.capabilities.
        self.upload_method: Literal["POST", "PUT"] = "PUT" if settings.upload_method == "put" else "POST"

    async def presign_post(
        self, key: str, content_type: str, max_bytes: int, checksum: str | None = None
    ) -> PresignedPost:
        """A POST policy for one object: botocore's fields, without botocore's per-call overhead.

        The first call goes through ``generate_presigned_post`` and learns the URL
        and credential scope from it; later calls sign with ``post_policy.sign_post``,
        which produces the same fields for the same inputs (tests/test_fast_presign.py).
        """
        ttl = self.settings.presign_ttl
        fields = {"Content-Type": content_type, "success_action_status": "201"}
        conditions = policy_conditions(content_type, max_bytes)
        if checksum is not None:  # pinned, so the store keeps it for promotion to compare
            pinned = {
                f"x-amz-meta-{name}": value for name, value in declared_metadata(checksum, None).items()
            }
            fields.update(pinned)
            conditions.extend(dict([item]) for item in pinned.items())
        moment = signing_moment(int(time.time()), ttl)
        if self.post_target is None:
            with translated(self.bucket):
                post = await self.signer.generate_presigned_post(
                    Bucket=self.settings.s3_bucket,
                    Key=key,
                    Fields=fields,
                    Conditions=conditions,
                    ExpiresIn=ttl,
                )
            self.post_target = PostTarget.from_botocore(post)
            return PresignedPost(url=post["url"], fields=post["fields"], expires_at=moment.expires_at)
        credentials = await self.frozen_credentials()
        signed = sign_post(
            credentials, self.post_target, self.settings.s3_bucket, key, fields, conditions, moment
        )
        return PresignedPost(url=self.post_target.url, fields=signed, expires_at=moment.expires_at)

    async def presign_put(
        self, key: str, content_type: str, size: int, checksum: str | None = None
    ) -> PresignedPut:
        """A presigned PutObject whose signature pins length, type, checksum and a private ACL.

        Every header below is in X-Amz-SignedHeaders, so a request with another length,
        type or checksum, or with ``x-amz-acl: public-read`` instead, fails the signature.
        The declaration is also pinned as metadata, which every store keeps for promotion.
        """
        params: dict[str, Any] = {
            "ContentType": content_type,
            "ContentLength": size,
            "ACL": "private",
            "Metadata": declared_metadata(checksum, size),
        }
        headers = {"Content-Type": content_type, "Content-Length": str(size), "x-amz-acl": "private"}
        if checksum is not None:
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        headers.update({f"x-amz-meta-{name}": value for name, value in params["Metadata"].items()})
        expires_at = self.expiry(self.settings.presign_ttl)
        url = await self.presign_operation("put_object", key, **params)
        return PresignedPut(url=url, headers=headers, expires_at=expires_at)

    async def frozen_credentials(self) -> ReadOnlyCredentials:
        """The credentials as of now, from the object botocore's own presigning signs with.

        Refreshable credentials (the default chain's instance roles, SSO, assume-role)
        refresh here when due; temporary credentials bring their session token.
        """
        # try/except, not ``translated()``: this runs on every presign, and a context manager costs a few µs.
        try:
            if self.credentials is None:
                raise NoCredentialsError()
            frozen: ReadOnlyCredentials = await self.credentials.get_frozen_credentials()
        except (*UNREACHABLE, *REFUSALS) as exc:
            raise classify(exc, self.bucket) from exc
        return frozen

    def expiry(self, ttl: int) -> datetime:
        return (datetime.now(UTC) + timedelta(seconds=ttl)).replace(microsecond=0)

    # --- objects ----------------------------------------------------------

    async def lean(self) -> signed.SignedRequests | None:
        """The bucket's lean requests (learning its URL from botocore once), or None without a session."""
        if self.http is None:
            return None
        if self.requests is None:
            url = await self.s3.generate_presigned_url("list_objects_v2", Params={"Bucket": self.bucket})
            target = signed.BucketTarget.from_presigned(url)
            self.requests = signed.SignedRequests(self.http, target, self.frozen_credentials)
        return self.requests

    async def _object(
        self, operation: str, method: str, key: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> signed.Answer | None:
        """One object request sent lean, or None when this Storage has no session (the caller asks botocore)."""
        requests = await self.lean()
        if requests is None:
            return None
        return await requests.send(operation, method, requests.target.object_path(key), "", headers, body)

    async def delete(self, key: str) -> None:
        with translated(self.bucket):
            if await self._object("DeleteObject", "DELETE", key) is None:
                await self.s3.delete_object(Bucket=self.settings.s3_bucket, Key=key)

    async def facts(self, key: str) -> ObjectFacts:
        """HEAD with the ETag and user metadata, for promotion's checks."""
        with translated(self.bucket):
            answer = await self._object("HeadObject", "HEAD", key)
            if answer is not None:
                return facts_from_headers(key, answer.headers)
            head = await self.s3.head_object(Bucket=self.settings.s3_bucket, Key=key)
        return ObjectFacts(
            key,
            int(head["ContentLength"]),
            head.get("ContentType", ""),
            head["LastModified"],
            head["ETag"],
            dict(head.get("Metadata", {})),
        )

    async def copy_verified(
        self, source: str, etag: str, target: str, content_type: str, metadata: dict[str, str]
    ) -> str:
        """Server-side copy of exactly the version that was verified (CopySourceIfMatch), with our type and facts.

        A single CopyObject handles up to 5 GiB, which SOUNDPOST_MAX_UPLOAD_BYTES never exceeds.
        Returns the copy's ETag.
        """
        headers = {
            "content-type": content_type,
            # botocore's encoding of CopySource={"Bucket", "Key"}
            "x-amz-copy-source": quote(f"{self.bucket}/{source}", safe="/-._~"),
            "x-amz-copy-source-if-match": etag,
            "x-amz-metadata-directive": "REPLACE",
            **{f"x-amz-meta-{name}": value for name, value in metadata.items()},
        }
        with translated(self.bucket, conditional=True):
            answer = await self._object("CopyObject", "PUT", target, headers)
            if answer is not None:
                return copied_etag(answer.body)
            copied = await self.s3.copy_object(
                Bucket=self.settings.s3_bucket,
                Key=target,
                CopySource={"Bucket": self.settings.s3_bucket, "Key": source},
                CopySourceIfMatch=etag,
                MetadataDirective="REPLACE",
                ContentType=content_type,
                Metadata=metadata,
            )
        return str(copied.get("CopyObjectResult", {}).get("ETag", ""))

    async def get_record(self, key: str) -> Record:
        """A small JSON object of ours and its ETag; NotFound if absent."""
        with translated(self.bucket):
            answer = await self._object("GetObject", "GET", key)
            if answer is not None:
                headers = answer.headers
                return Record(
                    answer.body, headers.get("ETag", ""), http_date(headers.get("Last-Modified", ""))
                )
            got = await self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)
            async with got["Body"] as body:
                data: bytes = await body.read()
        return Record(data, got["ETag"], got["LastModified"])

    async def put_record(self, key: str, body: bytes, *, if_match: str | None = None) -> str:
        """Create ``key`` only if absent (or replace it only at ETag ``if_match``); returns the new ETag.

        Raises PreconditionFailed when another writer got there first: this is
        how replicas agree on who promotes an upload and who delivers its announcement.
        """
        # radosgw 16.2 matches If-Match only against the bare hex ETag; moto and S3 accept it too.
        condition = {"if-none-match": "*"} if if_match is None else {"if-match": if_match.strip('"')}
        with translated(self.bucket, conditional=True):
            answer = await self._object(
                "PutObject", "PUT", key, {"content-type": "application/json", **condition}, body
            )
            if answer is not None:
                return written_etag(answer.headers.get("ETag"))
            request: PutObjectRequestTypeDef = {
                "Bucket": self.settings.s3_bucket,
                "Key": key,
                "Body": body,
                "ContentType": "application/json",
            }
            if if_match is not None:
                request["IfMatch"] = condition["if-match"]
            else:
                request["IfNoneMatch"] = "*"
            put = await self.s3.put_object(**request)
        return written_etag(put.get("ETag"))

    async def put_plain(self, key: str, body: bytes) -> None:
        """An unconditional write of one of our records (the last word on an upload id)."""
        with translated(self.bucket):
            if (
                await self._object("PutObject", "PUT", key, {"content-type": "application/json"}, body)
                is None
            ):
                await self.s3.put_object(
                    Bucket=self.settings.s3_bucket, Key=key, Body=body, ContentType="application/json"
                )

    async def _list_page(self, prefix: str, limit: int, start_after: str | None) -> listing.Page:
        """One ListObjectsV2 call: up to ``limit`` objects under ``prefix``, after ``start_after`` if given."""
        with translated(self.bucket):
            requests = await self.lean()
            if requests is None:
                return await self._botocore_page(prefix, limit, start_after)
            return await listing.page(requests, prefix, limit, start_after)

    async def _botocore_page(self, prefix: str, limit: int, start_after: str | None) -> listing.Page:
        """The same page through botocore: for a Storage made without a session of its own (tools, tests)."""
        request: ListObjectsV2RequestTypeDef = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after:
            request["StartAfter"] = start_after
        page = await self.s3.list_objects_v2(**request)
        contents = [
            (item["Key"], str(item["Size"]), item.get("ETag", ""), item["LastModified"].isoformat())
            for item in page.get("Contents", [])
        ]
        return listing.Page(contents, bool(page.get("IsTruncated")))

    async def list_objects(self, prefix: str, limit: int, start_after: str | None = None) -> ObjectPage:
        """One page of objects under ``prefix`` with size, ETag and time: one S3 call."""
        page = await self._list_page(prefix, limit, start_after)
        try:
            found = [Listed(key, int(size), etag, timestamp(at)) for key, size, etag, at in page.contents]
        except ValueError as exc:
            raise StorageUnavailable(f"S3's listing lacks an object's size or time ({exc})") from None
        more = page.truncated and bool(found)
        return ObjectPage(found, found[-1].key if more else None)

    async def open_uploads(self, prefix: str, limit: int = 1000) -> list[OpenUpload]:
        """Multipart uploads in progress under ``prefix`` (at most ``limit``)."""
        found: list[OpenUpload] = []
        request: ListMultipartUploadsRequestTypeDef = {"Bucket": self.settings.s3_bucket, "Prefix": prefix}
        while len(found) < limit:
            with translated(self.bucket):
                page = await self.s3.list_multipart_uploads(**request)
            found += [OpenUpload(u["Key"], u["UploadId"], u["Initiated"]) for u in page.get("Uploads", [])]
            if not page.get("IsTruncated"):
                break
            request["KeyMarker"], request["UploadIdMarker"] = (
                page["NextKeyMarker"],
                page["NextUploadIdMarker"],
            )
        return found[:limit]

    async def list_keys(self, prefix: str, limit: int, start_after: str | None = None) -> Listing:
        """One page of keys under ``prefix`` in S3's (ascending) order."""
        page = await self._list_page(prefix, limit, start_after)
        found = [key for key, _, _, _ in page.contents]
        more = page.truncated and bool(found)
        return Listing(found, found[-1] if more else None)

    async def presign_operation(self, operation: str, key: str, **params: object) -> str:
        """A URL for one operation on one key, on the browser-visible endpoint, valid for the presign TTL."""
        with translated(self.bucket):
            url: str = await self.signer.generate_presigned_url(
                operation,
                Params={"Bucket": self.settings.s3_bucket, "Key": key, **params},
                ExpiresIn=self.settings.presign_ttl,
            )
        return url

    async def presign_internal(self, operation: str, key: str, ttl: int, **params: object) -> str:
        """A URL for one operation on one key at the service's own endpoint (for its decoding worker)."""
        with translated(self.bucket):
            url: str = await self.s3.generate_presigned_url(
                operation, Params={"Bucket": self.settings.s3_bucket, "Key": key, **params}, ExpiresIn=ttl
            )
        return url

    async def presign_get(self, key: str, content_type: str, disposition: str) -> tuple[str, datetime]:
        expires_at = self.expiry(self.settings.presign_ttl)
        url = await self.presign_operation(
            "get_object", key, ResponseContentType=content_type, ResponseContentDisposition=disposition
        )
        return url, expires_at

    # --- multipart uploads --------------------------------------------------

    async def create_multipart(
        self, key: str, content_type: str, part_checksums: bool = False
    ) -> tuple[str, bool]:
        """Start a multipart upload: S3's id, and whether the store took SHA-256 part checksums.

        S3 wants the algorithm named at creation for part checksums to be accepted at
        completion; the metadata tells promotion to look for the parts record. A store
        that refuses the algorithm (not every S3-compatible one has checksums) gets the
        upload without it: promotion still checks each part against the record.
        """
        bucket = self.settings.s3_bucket
        marker = {PART_CHECKSUMS_METADATA: PART_CHECKSUMS_SHA256}
        with translated(self.bucket):
            if not part_checksums:
                created = await self.s3.create_multipart_upload(
                    Bucket=bucket, Key=key, ContentType=content_type
                )
                return str(created["UploadId"]), False
            try:
                created = await self.s3.create_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    ContentType=content_type,
                    ChecksumAlgorithm="SHA256",
                    Metadata=marker,
                )
                return str(created["UploadId"]), True
            except ClientError as exc:
                code, status = error_code(exc)
                if code not in CHECKSUMS_REFUSED and status not in (400, 501):
                    raise
                logger.warning(
                    "the store refused SHA-256 part checksums at CreateMultipartUpload (%s): "
                    "parts are checked at promotion only",
                    code,
                )
            created = await self.s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=marker
            )
            return str(created["UploadId"]), False

    async def presign_part(
        self, key: str, upload_id: str, part_number: int, checksum: str | None = None
    ) -> str:
        """An UploadPart URL; with ``checksum`` the part's x-amz-checksum-sha256 is signed too."""
        extra = {} if checksum is None else {"ChecksumSHA256": checksum}
        return await self.presign_operation(
            "upload_part", key, UploadId=upload_id, PartNumber=part_number, **extra
        )

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every part uploaded so far, across all the pages S3 answers with."""
        parts: list[Part] = []
        marker = 0
        while True:
            with translated(self.bucket):
                page = await self.s3.list_parts(
                    Bucket=self.settings.s3_bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            parts += [Part(p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", [])]
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    async def complete_multipart(self, key: str, upload_id: str, parts: list[Chosen]) -> str:
        """Assemble the parts, naming each part's SHA-256 where it has one; returns the object's location."""
        listed: list[CompletedPartTypeDef] = []
        for part in parts:
            item: CompletedPartTypeDef = {"PartNumber": part.number, "ETag": part.etag}
            if part.sha256 is not None:
                item["ChecksumSHA256"] = part.sha256
            listed.append(item)
        try:
            done = await self.s3.complete_multipart_upload(
                Bucket=self.settings.s3_bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except ClientError as exc:
            code, status = error_code(exc)
            if status == 400 and code not in CREDENTIALS_REFUSED:  # InvalidPart, EntityTooSmall, ...
                message = exc.response.get("Error", {}).get("Message")
                raise PartsRejected(f"{code}: {message}") from None
            raise classify(exc, self.bucket) from exc
        except UNREACHABLE as exc:
            raise classify(exc, self.bucket) from exc
        return str(
            done.get("Location")
            or f"{self.settings.browser_s3_endpoint or ''}/{self.settings.s3_bucket}/{key}"
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with translated(self.bucket):
            await self.s3.abort_multipart_upload(Bucket=self.settings.s3_bucket, Key=key, UploadId=upload_id)


def http_date(value: str) -> datetime:
    """A Last-Modified header (RFC 7231's date) as an aware datetime; botocore parses what else a store sends."""
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return timestamp(value)


def facts_from_headers(key: str, headers: Mapping[str, str]) -> ObjectFacts:
    """HEAD's headers as botocore's head_object reads them; a store that omits the length is failing."""
    length = headers.get("Content-Length")
    if length is None or not length.isdigit():
        raise StorageUnavailable(f"S3's HEAD of an object states no length ({length!r})")
    metadata = user_metadata(headers.items())
    return ObjectFacts(
        key,
        int(length),
        headers.get("Content-Type", ""),
        http_date(headers.get("Last-Modified", "")),
        headers.get("ETag", ""),
        metadata,
    )


def written_etag(etag: str | None) -> str:
    """A write's ETag, which conditional writes name later: an answer without one is not S3's success."""
    if not etag:
        raise StorageUnavailable("S3 answered a PutObject without an ETag")
    return etag


def copied_etag(body: bytes) -> str:
    """The new object's ETag from a CopyObjectResult (empty when a store leaves it out)."""
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - the store's answer, parsed as botocore parses it
    except ElementTree.ParseError:
        return ""
    return next((child.text or "" for child in root if signed.local(child.tag) == "ETag"), "")


def timestamp(value: str) -> datetime:
    """S3's times as datetimes: ISO 8601 (every listed object's) by the standard library, the rest by botocore.

    botocore's own parser goes through dateutil, which took 2 of a listing page's
    3 ms of parsing (measured: 50 uploads and their sidecars, one time each).
    """
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed: datetime = botocore.utils.parse_timestamp(value)
        return parsed


def aioboto3_session(settings: Settings) -> aioboto3.Session:
    """Explicit keys when configured, otherwise the default AWS credential chain; S3's times parsed fast."""
    botocore_session = aiobotocore.session.get_session()
    botocore_session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=timestamp)
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        return aioboto3.Session(
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=str(settings.s3_secret_access_key),
            aws_session_token=str(settings.s3_session_token) if settings.s3_session_token else None,
            region_name=settings.s3_region,
            botocore_session=botocore_session,
        )
    return aioboto3.Session(region_name=settings.s3_region, botocore_session=botocore_session)


def client_config(settings: Settings) -> Config:
    # Custom endpoints (MinIO, Ceph, moto) want path-style addressing; AWS picks its own.
    addressing = "path" if settings.s3_endpoint else "auto"
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing},
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        retries=RETRIES,
        # Checksums only where an operation requires one: botocore's default (since 1.36) adds
        # CRC32 to uploads and presigned URLs, which many S3-compatible stores refuse.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    session = aioboto3_session(settings)
    config = client_config(settings)
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.s3_endpoint, config=config)
        )
        signer = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.browser_s3_endpoint, config=config)
        )
        # boto3's public Session.get_credentials: the session's cached credentials object, which
        # the clients were made with (neither was given keys of its own), refreshed when due.
        credentials = await session.get_credentials()
        http = await stack.enter_async_context(lean_session(settings))
        yield Storage(settings, s3, signer, credentials, http)


def lean_session(settings: Settings) -> aiohttp.ClientSession:
    """The lean calls' HTTP session: botocore's timeouts and CA bundle (proxies: ``signed.proxy_for``)."""
    verify = botocore.httpsession.get_cert_path(True)
    context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or verify)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=LEAN_POOL_CONNECTIONS, ssl=context),
        timeout=aiohttp.ClientTimeout(
            sock_connect=settings.s3_connect_timeout, sock_read=settings.s3_read_timeout
        ),
        auto_decompress=False,
    )


class StorageMisconfigured(RuntimeError):
    """Start-up found a bucket that does not exist or credentials S3 refuses; the message says which."""


# How long start-up waits for S3's first answer before starting without it (readiness reports it).
STARTUP_CHECK_SECONDS = 5.0


async def probe(storage: Storage) -> StorageError | None:
    """Ask S3 for one key under the prefix: None if it answers, else what its failure means.

    A listing, not HeadBucket, because its error body names the cause (NoSuchBucket,
    InvalidAccessKeyId, SignatureDoesNotMatch); it needs the s3:ListBucket the service needs anyway.
    """
    try:
        await storage.list_keys(storage.settings.s3_key_prefix, 1)
    except StorageError as exc:
        return exc
    return None


async def check_at_startup(storage: Storage) -> bool:
    """Refuse to start on a missing bucket or refused credentials, naming the setting to fix; True if S3 answered.

    Those only an operator can fix, so failing loudly beats serving errors. An S3 that
    is down or slow is not a reason to stay down: the service starts and /readyz says so.
    """
    try:
        fault = await asyncio.wait_for(probe(storage), STARTUP_CHECK_SECONDS)
    except TimeoutError:
        fault = StorageUnavailable("no answer within the start-up check's deadline")
    if fault is None:
        return True
    if isinstance(fault, StorageUnavailable):
        logger.warning(
            "S3 did not answer at start-up (%s); starting anyway, /readyz reports it", fault.advice
        )
        return False
    if not isinstance(fault, StorageRefused) or fault.problem == "error":
        logger.warning("S3 refused the start-up check: %s; starting anyway", fault.advice)
        return False
    logger.error("cannot start: %s", fault.advice)
    raise StorageMisconfigured(fault.advice)
