"""The upload endpoints. Thin: decode, check, build the key, presign."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from service import audio, budgets, keys
from service.api import Spec
from service.auth import require_user
from service.errors import ApiError
from service.observability import PRESIGNED
from service.params import validation_error
from service.resources import resources
from service.schemas import (
    PresignRequest,
    PresignResponse,
    User,
    json_response,
    presign_request_decoder,
)
from service.settings import Settings

MAX_JSON_BODY = 4 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class FieldPaths:
    """Where each fact sits in a request, for error paths (JSON body or query string)."""

    filename: str = "$.filename"
    content_type: str = "$.contentType"
    size: str = "$.size"


class NewUpload(msgspec.Struct, frozen=True):
    """A Struct, not a dataclass: one is made per presign, and a frozen dataclass costs 7x more to make."""

    key: str
    content_type: str
    max_bytes: int


async def read_json_body(request: Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The raw body of a JSON request, refusing other media types and oversized bodies early.

    The two headers are read off the raw list: building Starlette's ``Headers``
    and searching it twice cost about 1 µs more per call (2.9 against 1.8 µs).
    """
    content_type = declared = None
    for name, value in request.scope["headers"]:  # the first of each counts, as with Headers.get
        if name == b"content-type":
            content_type = value if content_type is None else content_type
        elif name == b"content-length":
            declared = value if declared is None else declared
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    # bytes.isdigit is ASCII only; a length longer than the limit's digits is over it (and int() refuses
    # more than 4,300 digits).
    if declared is not None and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise ApiError(413, "body_too_large", f"The request body must be at most {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    more_body = True
    while more_body:  # ASGI messages read directly: the body is small, and this is the presign hot path
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more_body = message.get("more_body", False)
        if size > limit:
            raise ApiError(413, "body_too_large", f"The request body must be at most {limit} bytes.")
    return b"".join(chunks)


def decode_json(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """The body as the decoder's type; bad JSON is a 400, JSON of the wrong shape a 422."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec decodes nested arrays and objects by recursion
        raise ApiError(400, "malformed_json", "The body's JSON is nested too deeply.") from None


def checked_content_type(settings: Settings, content_type: str, path: str = "$.contentType") -> str:
    canonical = audio.canonical_type(content_type)
    if canonical is None or canonical not in settings.allowed_types:
        allowed = ", ".join(settings.allowed_types)
        raise ApiError(
            422,
            "unsupported_type",
            f"{content_type!r} is not an accepted audio type (accepted: {allowed}).",
            path,
        )
    return canonical


def checked_filename(filename: str, canonical: str, path: str = "$.filename") -> str:
    name = keys.safe_filename(filename, audio.extensions_for(canonical)[0])
    extension = keys.split_extension(name)[1]
    if not audio.extension_agrees(extension, canonical):
        raise ApiError(
            422,
            "extension_mismatch",
            f"A {extension} file cannot be uploaded as {canonical}.",
            path,
        )
    return name


def upload_limit(settings: Settings, declared: int | None, path: str = "$.size") -> int:
    """The most bytes the policy allows: the declared size, capped by the configured maximum."""
    if declared is not None and declared > settings.max_upload_bytes:
        raise ApiError(
            413,
            "file_too_large",
            f"Files may be at most {settings.max_upload_bytes} bytes.",
            path,
        )
    return declared or settings.max_upload_bytes


PRESIGN = Spec(
    "Presign a POST of one audio file straight to the bucket, under a key the server chooses.",
    response=PresignResponse,
    body=PresignRequest,
    signed_in=True,
    budget=budgets.UPLOADS,
    errors={
        413: ("file_too_large", "quota_exceeded"),
        422: ("unsupported_type", "extension_mismatch"),
        429: ("too_many_pending_uploads",),
    },
    tag="uploads",
)


def new_upload(
    settings: Settings,
    user: User,
    filename: str,
    content_type: str,
    size: int | None,
    paths: FieldPaths = FieldPaths(),
) -> NewUpload:
    """Check what the client asks to upload and pick its key under the user's own prefix."""
    canonical = checked_content_type(settings, content_type, paths.content_type)
    name = checked_filename(filename, canonical, paths.filename)
    max_bytes = upload_limit(settings, size, paths.size)
    key = keys.build_key(settings.s3_key_prefix, user.user_id, keys.new_upload_id(), name)
    return NewUpload(key, canonical, max_bytes)


async def presigned_url(request: Request) -> Response:
    user = require_user(request)
    state = resources(request)
    settings, storage = state["settings"], state["storage"]
    ask = decode_json(presign_request_decoder, await read_json_body(request))
    upload = new_upload(settings, user, ask.filename, ask.content_type, ask.size)
    state["usage"].admit(user.user_id, ask.size)  # the cached count only: no S3 call on this path
    post = await storage.presign_post(upload.key, upload.content_type, upload.max_bytes)
    PRESIGNED["post"].inc()
    return json_response(
        PresignResponse(
            url=post.url,
            fields=post.fields,
            key=upload.key,
            expires_at=post.expires_at,
            max_bytes=upload.max_bytes,
        )
    )
