"""Request and response bodies: the single source of truth for validation and the API schema.

Decoders and encoders are built once at import. ``forbid_unknown_fields`` turns a
misspelt field into a clear 422 instead of a silently ignored option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.responses import Response

from service.core.media_job import AudioFacts

Filename = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1024,
        description="The name of the file on the user's device; only a sanitised copy is kept.",
        examples=["interview 2026-11-24.wav"],
    ),
]
ContentType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        description="The file's audio media type; common aliases are accepted and normalised.",
        examples=["audio/webm;codecs=opus"],
    ),
]
ByteCount = Annotated[
    int,
    Meta(ge=1, le=5 * 1024**3, description="The file's size in bytes, if known.", examples=[1048576]),
]

Sha256 = Annotated[
    str,
    Meta(
        pattern="^[A-Za-z0-9+/]{43}=$",
        description="Base64 of the SHA-256 of the bytes; the store or promotion refuses others.",
        examples=["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
    ),
]


class PresignRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Ask for a presigned POST for one audio file."""

    filename: Filename
    content_type: ContentType
    size: ByteCount | None = None
    checksum_sha256: Sha256 | None = None


class PresignResponse(msgspec.Struct, rename="camel", omit_defaults=True):
    """``POST``: post ``fields`` then the file (last) as multipart/form-data to ``url``.

    ``PUT``: send the file as the body to ``url`` with exactly ``headers``.
    """

    url: str
    key: str
    expires_at: datetime
    max_bytes: int
    method: Literal["POST", "PUT"]
    fields: dict[str, str] | None = None
    headers: dict[str, str] | None = None


class User(msgspec.Struct, rename="camel"):
    """The signed-in user, as the session holds it: identity only, never tokens.

    ``email`` is an address the provider says it verified, or null: an unverified
    address is never shown as the user's (``emailVerified`` is then false).
    """

    provider: str
    subject: str
    user_id: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None


class LogoutQuery(msgspec.Struct):
    """How much to sign out of."""

    everywhere: Annotated[
        bool,
        Meta(description="Sign out every session of this user that signed in before now, on every device."),
    ] = False


class Provider(msgspec.Struct, rename="camel"):
    name: str
    title: str
    login_url: str


class ProviderList(msgspec.Struct, rename="camel"):
    providers: list[Provider]


# --- Uppy's @uppy/aws-s3 protocol (the shapes Uppy Companion speaks) -------------

PartNumber = Annotated[int, Meta(ge=1, le=10_000, description="S3 part numbers run from 1 to 10000.")]
ETag = Annotated[str, Meta(min_length=1, max_length=1024)]


class SignedPost(msgspec.Struct, tag_field="method", tag="POST"):
    """``GET /s3/params``: a form POST for Uppy to send; ``expires`` is in seconds."""

    url: str
    fields: dict[str, str]
    expires: int


class SignedPut(msgspec.Struct, tag_field="method", tag="PUT"):
    """``GET /s3/params`` on a store without POST uploads: a presigned PUT with the headers it signs."""

    url: str
    headers: dict[str, str]
    expires: int


class PartChecksumQuery(msgspec.Struct, rename={"checksum_sha256": "checksumSha256"}):
    """What a part URL may pin besides its number: the part's own SHA-256."""

    key: str
    checksum_sha256: Sha256 | None = None


class MultipartRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /s3/multipart``: start a multipart upload for one file."""

    filename: Filename
    type: ContentType
    metadata: dict[str, Any] = {}  # Any, not object: msgspec can describe Any in the schema


class MultipartCreated(
    msgspec.Struct,
    rename={
        "upload_id": "uploadId",
        "part_size": "partSize",
        "max_bytes": "maxBytes",
        "checksum_algorithm": "checksumAlgorithm",
    },
    omit_defaults=True,
):
    """Uppy reads the first three; the page also uploads in ``partSize`` parts and stops at ``maxBytes``.

    ``checksumAlgorithm`` is ``SHA256`` when the request asked for part checksums: then every
    part's URL is asked for with ``checksumSha256`` and complete names each part's SHA-256.
    """

    key: str
    upload_id: str
    bucket: str
    part_size: int | None = None
    max_bytes: int | None = None
    checksum_algorithm: Literal["SHA256"] | None = None


class SignedPart(msgspec.Struct, omit_defaults=True):
    url: str
    expires: int
    headers: dict[str, str] | None = None  # what the URL signed besides the part: send each as given


class SignedParts(msgspec.Struct, rename="camel"):
    presigned_urls: dict[str, str]


_PART_NAMES = {"number": "PartNumber", "etag": "ETag", "size": "Size", "checksum_sha256": "ChecksumSHA256"}


class UploadedPart(msgspec.Struct, rename=_PART_NAMES):
    number: int
    etag: str
    size: int


class CompletedPart(msgspec.Struct, rename=_PART_NAMES):
    """One part to assemble; its SHA-256 is required when the upload was created asking for part checksums."""

    number: PartNumber
    etag: ETag
    checksum_sha256: Sha256 | None = None


class CompleteRequest(msgspec.Struct):
    """``POST /s3/multipart/{uploadId}/complete``; Uppy may send fields of its own besides ``parts``."""

    parts: Annotated[list[CompletedPart], Meta(min_length=1, max_length=10_000)]


class Completed(msgspec.Struct):
    location: str
    key: str
    bucket: str


# --- the caller's uploads ------------------------------------------------------------


UploadStatus = Annotated[
    str,
    Meta(
        pattern="^(verified|pending)$",
        description="verified: checked and in the library, playable. pending: uploaded, not yet checked; never playable.",
    ),
]


class Upload(msgspec.Struct, rename="camel"):
    """One upload, as the library lists and confirms it."""

    id: str
    key: str
    filename: str
    size: int
    content_type: str
    uploaded_at: datetime
    duration_seconds: float | None = None  # decoded length; null only while pending
    status: UploadStatus = "verified"
    # Decoding: what the audio is, and where its waveform and rendition are read.
    audio: AudioFacts | None = None
    peaks_url: str | None = None
    rendition_url: str | None = None


class UploadList(msgspec.Struct, rename="camel"):
    uploads: list[Upload]
    next_cursor: str | None


class PlaybackUrl(msgspec.Struct, rename="camel"):
    url: str
    expires_at: datetime


class RenditionUrl(msgspec.Struct, rename="camel"):
    """A presigned GET of an upload's 16 kHz mono FLAC rendition."""

    url: str
    expires_at: datetime
    content_type: str


class UploadEvent(msgspec.Struct, rename="camel"):
    """The data of an ``upload.confirmed`` webhook event."""

    id: str
    key: str
    bucket: str
    user: str
    size: int
    content_type: str
    duration_seconds: float | None
    audio: AudioFacts | None = None
    rendition_key: str | None = None  # beside the upload in the same bucket; the owner's only
    rendition: RenditionUrl | None = None  # a presigned GET, valid for SOUNDPOST_PRESIGN_TTL from the event


class WebhookMessage(msgspec.Struct):
    """The Standard Webhooks envelope of ``upload.confirmed``: type, timestamp, data."""

    type: str
    timestamp: datetime
    data: UploadEvent


class RejectionEvent(msgspec.Struct, rename="camel"):
    """The data of an ``upload.rejected`` webhook event: which upload, and why it was deleted."""

    id: str
    key: str
    bucket: str
    user: str
    size: int
    content_type: str
    code: str
    detail: str


class RejectionMessage(msgspec.Struct):
    """The Standard Webhooks envelope of ``upload.rejected``."""

    type: str
    timestamp: datetime
    data: RejectionEvent


class Health(msgspec.Struct):
    """The process is up; nothing outside it was asked."""

    status: str


class Readiness(msgspec.Struct):
    """Whether the service can do its work: each outside dependency's check result ("ok" or why not)."""

    status: str
    checks: dict[str, str]


presign_request_decoder = msgspec.json.Decoder(PresignRequest)
multipart_request_decoder = msgspec.json.Decoder(MultipartRequest)
complete_request_decoder = msgspec.json.Decoder(CompleteRequest)
encoder = msgspec.json.Encoder()


class JsonBody(Response):
    """Already-encoded JSON, with its two headers written directly (no charset or header checks)."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            (b"content-type", b"application/json"),
        ]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
            ]


def json_response(value: object, status_code: int = 200) -> Response:
    return JsonBody(encoder.encode(value), status_code=status_code)


_ERROR_PATH = re.compile(r" - at `(\$[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def split_validation_message(message: str) -> tuple[str, str]:
    """Split msgspec's message into (detail, JSON path of the offending field).

    "Expected `int` - at `$.size`" gives ("Expected `int`", "$.size"); a missing or
    unknown field is reported at its parent, so its name is appended to the path.
    """
    match = _ERROR_PATH.search(message)
    detail, path = (message[: match.start()], match.group(1)) if match else (message, "$")
    named = _NAMED_FIELD.search(detail)
    if named:
        path = f"{path}.{named.group(1)}"
    return detail, path


# --- query and path parameters (they describe what handlers read; /openapi.json lists them) ---------


class UploadsQuery(msgspec.Struct):
    limit: Annotated[int, Meta(ge=1, le=100, description="Page size.")] | None = None
    cursor: Annotated[str, Meta(description="nextCursor from the previous page.")] | None = None


class UploadPath(msgspec.Struct):
    id: Annotated[str, Meta(description="The upload id: the middle segment of its key.")]


class ParamsQuery(msgspec.Struct, rename={"size": "metadata[size]"}):
    filename: Filename
    type: ContentType
    size: Annotated[int, Meta(ge=1, description="The file's size in bytes, if known.")] | None = None


class MultipartPath(msgspec.Struct, rename={"upload_id": "uploadId"}):
    upload_id: Annotated[str, Meta(min_length=1, description="S3's id of the multipart upload.")]


class PartPath(msgspec.Struct, rename={"upload_id": "uploadId", "part_number": "partNumber"}):
    upload_id: Annotated[str, Meta(min_length=1)]
    part_number: PartNumber


class KeyQuery(msgspec.Struct):
    key: Annotated[str, Meta(description="The key /s3/multipart answered with.")]


class BatchQuery(msgspec.Struct, rename={"part_numbers": "partNumbers"}):
    key: str
    part_numbers: Annotated[str, Meta(description="Comma-separated part numbers.", examples=["1,2,3"])]


# --- what an upload must be, shown before any upload (GET /api/limits) ------------------------


class AcceptedType(msgspec.Struct):
    """One audio type the service accepts, with the file extensions it is stored under."""

    type: Annotated[str, Meta(examples=["audio/wav"])]
    extensions: Annotated[list[str], Meta(examples=[[".wav", ".wave"]])]


class UploadLimits(msgspec.Struct, rename="camel"):
    """What an upload must be, so the page can say it before a file is picked."""

    accepted: list[AcceptedType]
    max_upload_bytes: Annotated[int, Meta(description="The largest file one upload may be.")]
    quota_bytes: Annotated[
        int | None, Meta(description="The most bytes the user's uploads may take together; null: no quota.")
    ]
    used_bytes: Annotated[
        int | None,
        Meta(
            description="What the user's uploads take, as this server last counted; null when there is no quota."
        ),
    ]
