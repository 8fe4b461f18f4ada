"""The caller's uploads: confirm, list, play back, delete.

Verified uploads live in the library area, which only promotion writes
(``service.lifecycle.promotion``); uploads not yet checked sit in staging and are listed as
``pending``, never played. Every lookup is under the caller's own prefixes, so
another user's id is simply not found: 404, the same as an id that never existed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from service.core import audio_types as audio
from service.core import budgets, keys, sidecars
from service.errors import ApiError
from service.http.api import Spec
from service.http.authentication import require_user
from service.http.handlers import STORAGE_ERRORS
from service.http.params import decode_path, decode_query
from service.lifecycle import folders, promotion
from service.limits.reservations import Amount
from service.resources import Resources, resources
from service.schemas import PlaybackUrl, Upload, UploadList, UploadPath, UploadsQuery, encoder, json_response
from service.settings import Settings
from service.storage.client import Listed
from service.storage.errors import NotFound, PreconditionFailed

DEFAULT_PAGE = 50
# Pending uploads shown on a listing's first page: one more LIST, at most this many items.
MAX_PENDING_LISTED = 100
# DELETE looks again when an announcement or a promotion moves the id's record under it, then answers 409.
DELETE_ROUNDS = 3
DELETE_RETRY_SECONDS = 0.1


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "There is no such upload.")


def _pending() -> ApiError:
    return ApiError(
        409,
        "upload_pending",
        "This upload has not been verified yet; it becomes playable once it is.",
        headers={"Retry-After": "2"},
    )


def content_disposition(filename: str) -> str:
    """``inline`` with an ASCII fallback name and the exact name per RFC 6266/8187; no quotes can break out."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;' else "_" for ch in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The ``{id}/{filename}`` a page ends at; anything else is a 400.

    A filename holding a control character never came from this service (keys
    have none) and makes some stores fail the listing, so it is refused here.
    """
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = ""
    upload_id, _, filename = after.partition("/")
    if not keys.UPLOAD_ID.match(upload_id) or not filename or "/" in filename or not filename.isprintable():
        raise ApiError(400, "invalid_cursor", "The cursor is not one this service handed out.", "cursor")
    return after


def type_of(filename: str) -> str:
    """A library object's Content-Type, from its name alone (promotion stores it that way)."""
    return audio.type_for_extension(keys.split_extension(filename)[1]) or "application/octet-stream"


def described(folder: folders.Folder, settings: Settings) -> Upload | None:
    """A library upload with the facts its sidecars' names state (no HEAD, no GET).

    The folder's keys were parsed when it was read (``folders.folders``), so the
    upload is made from its fields directly, not by parsing its key again.
    """
    item = folder.upload
    if item is None:
        return None
    upload = _listed_upload(item, folder.upload_id, folders.name_of(item.key), keys.LIBRARY)
    if folder.facts is not None:
        upload.duration_seconds, upload.audio = folder.facts.duration_seconds, folder.facts.audio
        upload.peaks_url, upload.rendition_url = folders.links(
            settings, folder.upload_id, folder.rendition_key is not None
        )
    return upload


def describe(item: Listed, area: keys.Area, prefix: str) -> Upload | None:
    """An upload as a listing shows it, from ListObjectsV2's facts only (no HEAD)."""
    parsed = keys.parse_area_key(prefix, item.key, area)
    if parsed is None:
        return None
    _, upload_id, filename = parsed
    return _listed_upload(item, upload_id, filename, area)


def _listed_upload(item: Listed, upload_id: str, filename: str, area: keys.Area) -> Upload:
    return Upload(
        id=upload_id,
        key=item.key,
        filename=filename,
        size=item.size,
        content_type=type_of(filename),
        uploaded_at=item.last_modified,
        status="verified" if area == keys.LIBRARY else "pending",
    )


def _upload_id(request: Request) -> str:
    upload_id = decode_path(request, UploadPath).id
    if not keys.UPLOAD_ID.match(upload_id):
        raise _not_found()
    return upload_id


async def _folder(state: Resources, owner: str, upload_id: str, area: keys.Area) -> list[str]:
    """Every key in the caller's folder of this id in one area (the upload and its sidecars): one LIST."""
    prefix = state["settings"].s3_key_prefix
    found = await state["storage"].list_keys(
        keys.upload_prefix(prefix, owner, upload_id, area), sidecars.FOLDER_OBJECTS
    )
    return found.keys


async def _one(state: Resources, owner: str, upload_id: str, area: keys.Area) -> str | None:
    """The caller's object of this id in one area: one LIST of a folder's few keys."""
    prefix = state["settings"].s3_key_prefix
    found = await _folder(state, owner, upload_id, area)
    return next((k for k in found if keys.parse_area_key(prefix, k, area) is not None), None)


async def confirm(request: Request) -> Response:
    """``POST /api/uploads/{id}/confirm``: promote the upload now (verify, copy to the library, announce)."""
    user = require_user(request)
    upload_id = _upload_id(request)
    result = await promotion.promote_upload(resources(request), user.user_id, upload_id)
    if result.upload is not None:
        return json_response(result.upload)
    if result.error is not None:
        raise result.error
    if result.outcome == "pending":
        raise ApiError(
            503,
            "promotion_in_progress",
            "This upload is being verified right now. Try again in a moment.",
            headers={"Retry-After": "1"},
        )
    raise _not_found()


async def list_uploads(request: Request) -> Response:
    """``GET /api/uploads?limit=&cursor=``: verified uploads newest first, pending ones ahead on the first page.

    A page costs one LIST of the library, and the first page one more of staging.
    """
    state, user = resources(request), require_user(request)
    settings, storage = state["settings"], state["storage"]
    ask = decode_query(request, UploadsQuery)
    limit = ask.limit or DEFAULT_PAGE
    library = keys.user_prefix(settings.s3_key_prefix, user.user_id, keys.LIBRARY)
    start_after = library + decode_cursor(ask.cursor) if ask.cursor else None
    page = await storage.list_objects(library, folders.list_size(limit), start_after)
    complete, last = folders.page_of_folders(
        page.objects, settings.s3_key_prefix, limit, page.next_start_after is not None
    )
    verified = [u for u in (described(f, settings) for f in complete) if u]
    pending: list[Upload] = []
    if ask.cursor is None:
        staging = keys.user_prefix(settings.s3_key_prefix, user.user_id, keys.STAGING)
        cap = settings.max_pending_uploads  # 0: no cap, and still no more than a page's worth listed
        shown = min(cap, MAX_PENDING_LISTED) if cap else MAX_PENDING_LISTED
        # Twice as many: a multipart upload's parts record lies beside it (and is no upload).
        waiting = await storage.list_objects(staging, 2 * shown)
        ids = {u.id for u in verified}
        candidates = (describe(o, keys.STAGING, settings.s3_key_prefix) for o in waiting.objects)
        pending = [u for u in candidates if u is not None and u.id not in ids][:shown]
    next_cursor = encode_cursor(last[len(library) :]) if last else None
    return json_response(UploadList(pending + verified, next_cursor))


async def playback_url(request: Request) -> Response:
    """``GET /api/uploads/{id}/url``: a short-lived GET URL for a verified upload, on the browser-visible endpoint."""
    state, user = resources(request), require_user(request)
    upload_id = _upload_id(request)
    key = await _one(state, user.user_id, upload_id, keys.LIBRARY)
    if key is None:
        if await _one(state, user.user_id, upload_id, keys.STAGING) is not None:
            raise _pending()
        raise _not_found()
    filename = key.rsplit("/", 1)[1]
    url, expires_at = await state["storage"].presign_get(
        key, type_of(filename), content_disposition(filename)
    )
    return json_response(PlaybackUrl(url, expires_at))


async def delete(request: Request) -> Response:
    """``DELETE /api/uploads/{id}``: the library object, any staging leftover and the pending announcement.

    The deletion first writes the id's record (conditionally, as a promotion claims
    it), so no promotion can copy the upload back while it runs; the record says
    "deleted" from then on, and a reused POST policy cannot bring the upload back.
    """
    state, user = resources(request), require_user(request)
    storage, prefix = state["storage"], state["settings"].s3_key_prefix
    upload_id = _upload_id(request)
    for _ in range(DELETE_ROUNDS):
        found = await promotion.read_decision(state, upload_id)
        if found is not None and found[0].owner != user.user_id:
            raise _not_found()
        library = await _one(state, user.user_id, upload_id, keys.LIBRARY)
        staged = await _folder(state, user.user_id, upload_id, keys.STAGING)
        staging = next((k for k in staged if keys.parse_key(prefix, k) is not None), None)
        if library is None and staging is None:
            raise _not_found()
        tombstone = encoder.encode(
            promotion.deleted_record(user.user_id, upload_id, staging or library or "")
        )
        pending = found is not None and found[0].pending
        if pending and library is None and found is not None and found[0].lease_until > time.time():
            raise _pending()  # mid-promotion: its copy may be on the way
        try:
            await storage.put_record(
                keys.decided_key(prefix, upload_id), tombstone, if_match=found[1] if found else None
            )
            break
        except (PreconditionFailed, NotFound):
            # The record moved this instant: an announcement was delivered, or a promotion claimed the id.
            await asyncio.sleep(DELETE_RETRY_SECONDS)
    else:
        raise _pending()
    decided = found[0].upload if found is not None else None
    parts = [k for k in staged if keys.parse_parts_key(prefix, k) is not None]
    for key in {k for k in (library, staging, decided.key if decided else None, *parts) if k is not None}:
        await storage.delete(key)
    await folders.remove_sidecars(storage, prefix, user.user_id, upload_id)
    if pending:
        await storage.delete(keys.outbox_key(prefix, upload_id))  # its announcement may be queued
    if library is not None and decided is not None:
        await state["reservations"].removed(
            user.user_id, Amount(decided.size, decided.duration_seconds or 0.0)
        )
    await state["reservations"].release(user.user_id, upload_id)  # a pending upload's slot
    return Response(status_code=204)


# --- contracts (service/app.py routes these; /openapi.json is made from them) -----------------------

_DOWN = STORAGE_ERRORS
LIST = Spec(
    "The caller's uploads: pending ones first (on the first page), then verified ones newest first.",
    response=UploadList,
    query=UploadsQuery,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={400: ("invalid_cursor",), **_DOWN},
    tag="library",
)
DELETE = Spec(
    "Delete one of the caller's uploads, verified or pending.",
    status=204,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={
        404: ("not_found",),
        409: ("upload_pending",),
        **_DOWN,
        503: ("storage_unavailable", "limits_unavailable"),
    },
    tag="library",
)
PLAYBACK_URL = Spec(
    "A presigned GET to play one of the caller's verified uploads.",
    response=PlaybackUrl,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={404: ("not_found",), 409: ("upload_pending",), **_DOWN},
    tag="library",
)
CONFIRM = Spec(
    "Verify an upload now and promote it to the library (deleting it if it fails), answering the promoted upload.",
    response=Upload,
    path=UploadPath,
    signed_in=True,
    budget=budgets.CONFIRM,
    errors={
        404: ("not_found",),
        413: ("file_too_large", "quota_exceeded", "duration_quota_exceeded", "too_long"),
        422: (
            "unsupported_type",
            "not_audio",
            "no_audio_stream",
            "no_samples",
            "corrupt",
            "truncated",
            "container_mismatch",
            "too_complex",
        ),
        **_DOWN,
        503: ("storage_unavailable", "promotion_in_progress", "limits_unavailable", "decoding_unavailable"),
    },
    tag="library",
)
