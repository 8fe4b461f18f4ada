"""The caller's uploads: confirm, list, play back, delete.

An upload's id is the middle segment of its key. Every lookup lists under the
caller's own prefix, so another user's id is simply not found: 404, the same as
an id that never existed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from service import audio, budgets, keys, sniff
from service.api import Spec
from service.auth import require_user
from service.errors import ApiError
from service.observability import UPLOADS_CONFIRMED
from service.params import decode_path, decode_query
from service.resources import resources
from service.schemas import (
    PlaybackUrl,
    Upload,
    UploadEvent,
    UploadList,
    UploadPath,
    UploadsQuery,
    User,
    WebhookMessage,
    encoder,
    json_response,
)
from service.settings import Settings
from service.storage import ERRORS as STORAGE_ERRORS
from service.storage import NotFound, Storage, StoredObject

DEFAULT_PAGE = 50


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "There is no such upload.")


def content_disposition(filename: str) -> str:
    """``inline`` with an ASCII fallback name and the exact name per RFC 6266/8187; no quotes can break out."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;' else "_" for ch in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The ``{id}/{filename}`` a page ends at; anything else is a 400."""
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = ""
    upload_id, _, filename = after.partition("/")
    if not keys.UPLOAD_ID.match(upload_id) or not filename or "/" in filename:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this service handed out.", "cursor")
    return after


def _describe(settings: Settings, obj: StoredObject, duration: float | None = None) -> Upload:
    parsed = keys.parse_key(settings.s3_key_prefix, obj.key)
    assert parsed is not None  # only keys under the caller's prefix reach here
    _, upload_id, filename = parsed
    return Upload(
        id=upload_id,
        key=obj.key,
        filename=filename,
        size=obj.size,
        content_type=obj.content_type,
        uploaded_at=obj.last_modified.astimezone(UTC),
        duration_seconds=duration,
    )


def _context(request: Request) -> tuple[Settings, Storage, User]:
    state = resources(request)
    return state["settings"], state["storage"], require_user(request)


async def _find(request: Request) -> tuple[Settings, Storage, User, StoredObject]:
    """The caller's upload named in the path, or 404."""
    settings, storage, user = _context(request)
    upload_id = decode_path(request, UploadPath).id
    if not keys.UPLOAD_ID.match(upload_id):
        raise _not_found()
    prefix = f"{keys.user_prefix(settings.s3_key_prefix, user.user_id)}{upload_id}/"
    found = await storage.list_keys(prefix, 1)
    if not found.keys or keys.parse_key(settings.s3_key_prefix, found.keys[0]) is None:
        raise _not_found()
    try:
        return settings, storage, user, await storage.head(found.keys[0])
    except NotFound:
        raise _not_found() from None


async def _refuse(storage: Storage, key: str, error: ApiError) -> ApiError:
    """Delete an object that failed confirmation; the error says why."""
    await storage.delete(key)
    return error


async def _checked(settings: Settings, storage: Storage, obj: StoredObject) -> float | None:
    """Check size, type and the bytes themselves; deletes the object and raises if any fails. Returns the duration."""
    canonical = audio.canonical_type(obj.content_type)
    if obj.size > settings.max_upload_bytes:
        raise await _refuse(
            storage,
            obj.key,
            ApiError(
                413,
                "file_too_large",
                f"Files may be at most {settings.max_upload_bytes} bytes; the upload was removed.",
            ),
        )
    if canonical is None or canonical not in settings.allowed_types:
        raise await _refuse(
            storage,
            obj.key,
            ApiError(
                422,
                "unsupported_type",
                f"{obj.content_type!r} is not an accepted audio type; the upload was removed.",
            ),
        )
    head = await storage.read_head(obj.key, min(obj.size, sniff.HEAD_BYTES)) if obj.size else b""
    if not sniff.matches_type(head, canonical):
        raise await _refuse(
            storage,
            obj.key,
            ApiError(422, "not_audio", f"The file's contents are not {canonical}; the upload was removed."),
        )
    return sniff.duration_seconds(head, whole=len(head) >= obj.size)


async def confirm(request: Request) -> Response:
    """``POST /api/uploads/{id}/confirm``: check the stored bytes are the audio they claim to be, then announce them."""
    settings, storage, user, obj = await _find(request)
    upload = _describe(settings, obj, await _checked(settings, storage, obj))
    sender = resources(request)["webhooks"]
    if sender is not None:
        event = UploadEvent(
            id=upload.id,
            key=upload.key,
            bucket=settings.s3_bucket,
            user=user.user_id,
            size=upload.size,
            content_type=upload.content_type,
            duration_seconds=upload.duration_seconds,
        )
        body = encoder.encode(WebhookMessage("upload.confirmed", datetime.now(UTC), event)).decode()
        # One id per upload: a retried confirm re-delivers the same message and receivers dedupe it.
        if not await sender.deliver(f"msg_{upload.id}", body):
            raise ApiError(
                502,
                "webhook_delivery_failed",
                "The upload is stored but could not be announced; confirm again to retry.",
            )
    UPLOADS_CONFIRMED.inc()
    return json_response(upload)


async def _head_or_none(storage: Storage, key: str) -> StoredObject | None:
    try:
        return await storage.head(key)
    except NotFound:  # deleted between the listing and now
        return None


async def list_uploads(request: Request) -> Response:
    """``GET /api/uploads?limit=&cursor=``: the caller's uploads, newest first (keys sort that way)."""
    settings, storage, user = _context(request)
    ask = decode_query(request, UploadsQuery)
    limit = ask.limit or DEFAULT_PAGE
    prefix = keys.user_prefix(settings.s3_key_prefix, user.user_id)
    cursor = ask.cursor
    start_after = prefix + decode_cursor(cursor) if cursor else None
    page = await storage.list_keys(prefix, limit, start_after)
    owned = [k for k in page.keys if keys.parse_key(settings.s3_key_prefix, k) is not None]
    found = await asyncio.gather(*(_head_or_none(storage, k) for k in owned))
    next_cursor = encode_cursor(page.next_start_after[len(prefix) :]) if page.next_start_after else None
    return json_response(UploadList([_describe(settings, o) for o in found if o is not None], next_cursor))


async def playback_url(request: Request) -> Response:
    """``GET /api/uploads/{id}/url``: a short-lived GET URL on the browser-visible endpoint."""
    settings, storage, _, obj = await _find(request)
    canonical = audio.canonical_type(obj.content_type)
    content_type = canonical if canonical in settings.allowed_types else "application/octet-stream"
    filename = _describe(settings, obj).filename
    url, expires_at = await storage.presign_get(obj.key, content_type, content_disposition(filename))
    return json_response(PlaybackUrl(url, expires_at))


async def delete(request: Request) -> Response:
    """``DELETE /api/uploads/{id}``."""
    _, storage, _, obj = await _find(request)
    await storage.delete(obj.key)
    return Response(status_code=204)


# --- contracts (service/app.py routes these; /openapi.json is made from them) -----------------------

_DOWN = STORAGE_ERRORS
LIST = Spec(
    "The caller's uploads, newest first, a page at a time.",
    response=UploadList,
    query=UploadsQuery,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={400: ("invalid_cursor",), **_DOWN},
    tag="library",
)
DELETE = Spec(
    "Delete one of the caller's uploads.",
    status=204,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={404: ("not_found",), **_DOWN},
    tag="library",
)
PLAYBACK_URL = Spec(
    "A presigned GET to play one of the caller's uploads.",
    response=PlaybackUrl,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={404: ("not_found",), **_DOWN},
    tag="library",
)
CONFIRM = Spec(
    "Check an uploaded object is the audio it claims to be (deleting it if not) and describe it.",
    response=Upload,
    path=UploadPath,
    signed_in=True,
    budget=budgets.CONFIRM,
    errors={
        404: ("not_found",),
        413: ("file_too_large",),
        422: ("unsupported_type", "not_audio"),
        502: ("webhook_delivery_failed",),
        **_DOWN,
    },
    tag="library",
)
