"""Request and response bodies: the single source of truth for validation and the API schema.

Decoders and encoders are built once at import. ``forbid_unknown_fields`` turns a
misspelt field into a clear 422 instead of a silently ignored option.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.responses import Response

Filename = Annotated[
    str,
    Meta(
        min_length=1, max_length=1024,
        description="The name of the file on the user's device; only a sanitised copy is kept.",
        examples=["interview 2026-11-24.wav"],
    ),
]
ContentType = Annotated[
    str,
    Meta(
        min_length=1, max_length=255,
        description="The file's audio media type; common aliases are accepted and normalised.",
        examples=["audio/webm;codecs=opus"],
    ),
]
ByteCount = Annotated[
    int,
    Meta(ge=1, le=5 * 1024**3, description="The file's size in bytes, if known.", examples=[1048576]),
]


class PresignRequest(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Ask for a presigned POST for one audio file."""

    filename: Filename
    content_type: ContentType
    size: ByteCount | None = None


class PresignResponse(msgspec.Struct, rename="camel"):
    """Post ``fields`` then the file (last) as multipart/form-data to ``url``."""

    url: str
    fields: dict[str, str]
    key: str
    expires_at: datetime
    max_bytes: int


class User(msgspec.Struct, rename="camel"):
    """The signed-in user, as the session holds it: identity only, never tokens."""

    provider: str
    subject: str
    user_id: str
    email: str | None = None
    name: str | None = None


class Provider(msgspec.Struct, rename="camel"):
    name: str
    title: str
    login_url: str


class ProviderList(msgspec.Struct, rename="camel"):
    providers: list[Provider]


presign_request_decoder = msgspec.json.Decoder(PresignRequest)
encoder = msgspec.json.Encoder()


def json_response(value: object, status_code: int = 200) -> Response:
    return Response(encoder.encode(value), status_code=status_code, media_type="application/json")

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
