"""Query and path parameters, decoded by the Structs that /openapi.json describes them with.

The same rule as for JSON bodies: one msgspec Struct validates the input, words the
error and documents the parameter. Query strings carry only text, so values are
converted the lenient way (``"12"`` is the integer 12), an empty value counts as
absent (browsers and Uppy send ``metadata[size]=`` for an unknown size), and
parameters a Struct does not name are ignored (Uppy adds whatever metadata the
page set). An error is a 422 whose path is the parameter's name; JSON bodies
(``uploads.decode_json``) answer through the same ``validation_error``, at the
field's JSON path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

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
