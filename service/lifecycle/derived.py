"""What decoding made beside an upload, for its owner: the waveform peaks and the speech rendition.

Both are looked up under the caller's own library prefix, so another user's id
is simply not found (404), the same as an id that never existed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.core import budgets, keys, sidecars
from service.core.media_job import RENDITION_TYPE, Peaks
from service.errors import ApiError
from service.http.api import Spec
from service.http.authentication import require_user
from service.http.handlers import STORAGE_ERRORS
from service.http.params import decode_path
from service.lifecycle import folders
from service.lifecycle.library import content_disposition
from service.resources import Resources, resources
from service.schemas import JsonBody, RenditionUrl, UploadPath, json_response
from service.storage.errors import NotFound


def _missing(what: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no such upload, or it has no {what}.")


def upload_id_of(request: Request) -> str:
    upload_id = decode_path(request, UploadPath).id
    if not keys.UPLOAD_ID.match(upload_id):
        raise _missing("such file")
    return upload_id


async def _folder(state: Resources, owner: str, upload_id: str) -> folders.Folder | None:
    """The caller's library folder of this id, with its sidecars: one LIST of at most three keys."""
    storage, prefix = state["storage"], state["settings"].s3_key_prefix
    found = await storage.list_objects(
        keys.upload_prefix(prefix, owner, upload_id, keys.LIBRARY), sidecars.FOLDER_OBJECTS
    )
    folder = next(folders.folders(found.objects, prefix), None)
    return folder if folder is not None and folder.upload is not None else None


async def peaks(request: Request) -> Response:
    """``GET /api/uploads/{id}/peaks``: the waveform as audiowaveform's JSON (min/max pairs, 8 bits)."""
    state, user = resources(request), require_user(request)
    folder = await _folder(state, user.user_id, upload_id_of(request))
    if folder is None or folder.peaks_key is None:
        raise _missing("waveform")
    try:
        record = await state["storage"].get_record(folder.peaks_key)
    except NotFound:
        raise _missing("waveform") from None
    return JsonBody(record.body, headers={"Cache-Control": "private, max-age=86400"})


async def rendition(request: Request) -> Response:
    """``GET /api/uploads/{id}/rendition``: a presigned GET of the 16 kHz mono FLAC made for transcription."""
    state, user = resources(request), require_user(request)
    folder = await _folder(state, user.user_id, upload_id_of(request))
    if folder is None or folder.rendition_key is None or folder.upload is None:
        raise _missing("rendition")
    stem = keys.split_extension(folder.upload.key.rsplit("/", 1)[1])[0]
    storage = state["storage"]
    url, expires_at = await storage.presign_get(
        folder.rendition_key, RENDITION_TYPE, content_disposition(f"{stem}.speech.flac")
    )
    return json_response(RenditionUrl(url, expires_at, RENDITION_TYPE))


# --- contracts (service/app.py routes these; /openapi.json is made from them) -----------------------

PEAKS = Spec(
    "The waveform of one of the caller's verified uploads: audiowaveform's JSON (version 2), as wavesurfer.js reads it.",
    response=Peaks,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={404: ("not_found",), **STORAGE_ERRORS},
    tag="library",
)
RENDITION = Spec(
    "A presigned GET of the 16 kHz mono FLAC rendition of one of the caller's uploads (SOUNDPOST_RENDITIONS=speech).",
    response=RenditionUrl,
    path=UploadPath,
    signed_in=True,
    budget=budgets.STORAGE,
    errors={404: ("not_found",), **STORAGE_ERRORS},
    tag="library",
)
