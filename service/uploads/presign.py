"""The upload endpoints. Thin: decode, check, build the key, presign."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from service.core import audio_types as audio
from service.core import budgets, keys
from service.errors import ApiError
from service.http.api import Spec
from service.http.authentication import require_user
from service.http.params import decode_json, read_json_body
from service.observability import PRESIGNED
from service.resources import resources
from service.schemas import (
    PresignRequest,
    PresignResponse,
    User,
    json_response,
    presign_request_decoder,
)
from service.settings import Settings
from service.storage.client import PresignedPost, PresignedPut


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
    upload_id: str


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


def required_size(declared: int | None, path: str = "$.size") -> int:
    """A presigned PUT signs the exact length, so it cannot be made without one."""
    if declared is None:
        raise ApiError(
            422, "validation_error", "The size is required: this store takes uploads by PUT.", path
        )
    return declared


PRESIGN = Spec(
    "Presign a POST (or, on stores without POST uploads, a PUT) of one audio file straight to the bucket.",
    response=PresignResponse,
    body=PresignRequest,
    signed_in=True,
    budget=budgets.UPLOADS,
    errors={
        413: ("file_too_large", "quota_exceeded"),
        422: ("unsupported_type", "extension_mismatch", "validation_error"),
        429: ("too_many_pending_uploads",),
        503: ("limits_unavailable",),
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
    upload_id = keys.new_upload_id()
    key = keys.build_key(settings.s3_key_prefix, user.user_id, upload_id, name)
    return NewUpload(key, canonical, max_bytes, upload_id)


async def presigned_url(request: Request) -> Response:
    user = require_user(request)
    state = resources(request)
    settings, storage = state["settings"], state["storage"]
    ask = decode_json(presign_request_decoder, await read_json_body(request))
    by_put = storage.upload_method == "PUT"
    size = required_size(ask.size) if by_put else 0
    upload = new_upload(settings, user, ask.filename, ask.content_type, ask.size)
    reservations = state["reservations"]
    if reservations.active:  # no quota and no pending cap: nothing to reserve, not even a coroutine
        await reservations.admit(user.user_id, upload.upload_id, ask.size)  # one round trip at most
    if by_put:
        signed: PresignedPost | PresignedPut = await storage.presign_put(
            upload.key, upload.content_type, size, ask.checksum_sha256
        )
    else:
        signed = await storage.presign_post(
            upload.key, upload.content_type, upload.max_bytes, ask.checksum_sha256
        )
    PRESIGNED["put" if by_put else "post"].inc()
    return json_response(
        PresignResponse(
            method="PUT" if by_put else "POST",
            url=signed.url,
            fields=signed.fields if isinstance(signed, PresignedPost) else None,
            headers=signed.headers if isinstance(signed, PresignedPut) else None,
            key=upload.key,
            expires_at=signed.expires_at,
            max_bytes=upload.max_bytes,
        )
    )
