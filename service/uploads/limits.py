"""GET /api/limits: the accepted types, the size limit and the user's quota, shown before any upload."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.core import audio_types as audio
from service.http.api import Spec
from service.http.authentication import require_user
from service.resources import resources
from service.schemas import AcceptedType, UploadLimits, json_response

LIMITS = Spec(
    "What an upload must be: accepted types, the largest file, and the user's quota.",
    response=UploadLimits,
    signed_in=True,
    tag="uploads",
)


async def upload_limits(request: Request) -> Response:
    user = require_user(request)
    state = resources(request)
    settings = state["settings"]
    quota = settings.user_quota_bytes
    used = await state["reservations"].used(user.user_id) if quota is not None else None
    return json_response(
        UploadLimits(
            accepted=[AcceptedType(t, list(audio.extensions_for(t))) for t in settings.allowed_types],
            max_upload_bytes=settings.max_upload_bytes,
            quota_bytes=quota,
            used_bytes=None if quota is None else (used.bytes if used is not None else 0),  # no S3 call
        )
    )
