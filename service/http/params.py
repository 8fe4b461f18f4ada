"""Request inputs (JSON bodies, query and path parameters), decoded by the Structs /openapi.json describes.

The same rule as for JSON bodies: one msgspec Struct validates the input, words the
error and documents the parameter. Query strings carry only text, so values are
converted the lenient way (``"12"`` is the integer 12), an empty value counts as
absent (browsers and Uppy send ``metadata[size]=`` for an unknown size), and
parameters a Struct does not name are ignored (Uppy adds whatever metadata the
page set). An error is a 422 whose path is the parameter's name; JSON bodies
(``decode_json``) answer through the same ``validation_error``, at the
field's JSON path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request

from service.errors import ApiError
from service.schemas import split_validation_message

T = TypeVar("T")


def decode_query(request: Request, struct: type[T]) -> T:
    """The request's query string as ``struct``; the last value of a repeated name counts."""
    return _decode({name: value for name, value in request.query_params.items() if value != ""}, struct)


def decode_path(request: Request, struct: type[T]) -> T:
    """The route's path parameters as ``struct``."""
    return _decode(request.path_params, struct)


def _decode(values: Mapping[str, Any], struct: type[T]) -> T:
    try:
        return msgspec.convert(values, struct, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, parameter=True) from None


def validation_error(exc: msgspec.ValidationError, *, parameter: bool = False) -> ApiError:
    """The 422 for input a Struct refused: at the field's JSON path, or at a parameter's name."""
    detail, where = split_validation_message(str(exc))
    return ApiError(422, "validation_error", detail, where.removeprefix("$.") if parameter else where)


MAX_JSON_BODY = 4 * 1024


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
