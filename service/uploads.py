"""The upload endpoints. Thin: decode, check, build the key, presign."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from service import audio, keys
from service.api import Spec
from service.auth import require_user
from service.errors import ApiError
from service.observability import PRESIGNS
from service.schemas import (
    PresignRequest,
    PresignResponse,
    json_response,
    presign_request_decoder,
    split_validation_message,
)
from service.settings import Settings
from service.storage import Storage

MAX_JSON_BODY = 4 * 1024


async def read_json_body(request: Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The raw body of a JSON request, refusing other media types and oversized bodies early."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"The request body must be at most {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"The request body must be at most {limit} bytes.")
    return bytes(body)


def decode_presign_request(body: bytes) -> PresignRequest:
    try:
        return presign_request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        detail, path = split_validation_message(str(exc))
        raise ApiError(422, "validation_error", detail, path) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None


def checked_content_type(settings: Settings, content_type: str) -> str:
    canonical = audio.canonical_type(content_type)
    if canonical is None or canonical not in settings.allowed_types:
        allowed = ", ".join(settings.allowed_types)
        raise ApiError(
            422, "unsupported_type",
            f"{content_type!r} is not an accepted audio type (accepted: {allowed}).",
            "$.contentType",
        )
    return canonical


def checked_filename(filename: str, canonical: str) -> str:
    name = keys.safe_filename(filename, audio.extensions_for(canonical)[0])
    extension = keys.split_extension(name)[1]
    if not audio.extension_agrees(extension, canonical):
        raise ApiError(
            422, "extension_mismatch",
            f"A {extension} file cannot be uploaded as {canonical}.",
            "$.filename",
        )
    return name


def upload_limit(settings: Settings, declared: int | None) -> int:
    """The most bytes the policy allows: the declared size, capped by the configured maximum."""
    if declared is not None and declared > settings.max_upload_bytes:
        raise ApiError(
            413, "file_too_large",
            f"Files may be at most {settings.max_upload_bytes} bytes.",
            "$.size",
        )
    return declared or settings.max_upload_bytes


PRESIGN = Spec(
    "Presign a POST of one audio file straight to the bucket, under a key the server chooses.",
    response=PresignResponse, body=PresignRequest, signed_in=True, signing=True,
    errors={413: ("file_too_large",), 422: ("unsupported_type", "extension_mismatch")},
    tag="uploads",
)


async def presigned_url(request: Request) -> Response:
    user = require_user(request)
    settings: Settings = request.app.state.settings
    storage: Storage = request.app.state.storage
    ask = decode_presign_request(await read_json_body(request))
    content_type = checked_content_type(settings, ask.content_type)
    filename = checked_filename(ask.filename, content_type)
    max_bytes = upload_limit(settings, ask.size)
    key = keys.build_key(settings.s3_key_prefix, user.user_id, keys.new_upload_id(), filename)
    post = await storage.presign_post(key, content_type, max_bytes)
    PRESIGNS.labels("post").inc()
    return json_response(
        PresignResponse(
            url=post.url, fields=post.fields, key=key, expires_at=post.expires_at, max_bytes=max_bytes
        )
    )
