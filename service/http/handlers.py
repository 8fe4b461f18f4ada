"""Which exception becomes which answer: the JSON error shape, or a small page for a browser navigation.

Unexpected exceptions are logged with their traceback and answered with a generic
500 that carries no exception text. The store's own errors (``service.storage.errors``)
become 502 or 503 here, with a log line naming what to fix.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.errors import ApiError, ErrorBody, ErrorResponse
from service.observability import ERRORS
from service.storage.errors import PartsRejected, StorageError, StorageRefused, StorageUnavailable

logger = logging.getLogger("soundpost")
storage_logger = logging.getLogger("soundpost.storage")

_encode = msgspec.json.Encoder().encode

# Codes for the statuses Starlette raises on its own (routing, methods).
_STATUS_CODES = {
    400: "bad_request",
    401: "not_signed_in",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


# Every error code a route that calls S3 can answer with, for its Spec.
STORAGE_ERRORS: dict[int, tuple[str, ...]] = {
    502: ("storage_bucket_missing", "storage_credentials_refused", "storage_error"),
    503: ("storage_unavailable",),
}
_REFUSED = {
    "bucket_missing": ApiError(
        502, "storage_bucket_missing", "Storage is misconfigured: its bucket does not exist."
    ),
    "credentials_refused": ApiError(
        502, "storage_credentials_refused", "Storage refused this service's credentials."
    ),
    "error": ApiError(502, "storage_error", "Storage refused the request."),
}


def storage_unavailable(seconds: int = 5) -> ApiError:
    return ApiError(
        503,
        "storage_unavailable",
        "Storage cannot be reached right now. Try again in a moment.",
        headers={"Retry-After": str(seconds)},
    )


def storage_answer(exc: StorageError) -> ApiError:
    """The answer a store's failure gets: transient ones 503 with Retry-After, the operator's to fix 502."""
    if isinstance(exc, StorageUnavailable):
        return storage_unavailable(exc.retry_after)
    if isinstance(exc, PartsRejected):
        return ApiError(400, "invalid_part", f"Storage refused the parts ({exc.advice}).")
    if isinstance(exc, StorageRefused):
        return _REFUSED[exc.problem]
    return _REFUSED["error"]


def wants_html(request: Request) -> bool:
    """Browser navigations get a page; API routes always answer JSON."""
    accept = request.headers.get("accept", "")
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    return "text/html" in accept and not path.startswith("/api/")


def error_response(request: Request, error: ApiError) -> Response:
    ERRORS.labels(error.code).inc()
    if wants_html(request):
        home = request.scope.get("root_path", "") + "/"
        return HTMLResponse(_page(error, home), status_code=error.status, headers=error.headers)
    body = _encode(ErrorResponse(ErrorBody(error.code, error.detail, error.path)))
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def _page(error: ApiError, home: str) -> str:
    title = html.escape(HTTPStatus(error.status).phrase)
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{title} · Soundpost</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem'>"
        f"<h1>{title}</h1><p>{html.escape(error.detail)}</p>"
        f"<p><small>Error code: <code>{html.escape(error.code)}</code></small></p>"
        f"{_link(error)}<p><a href='{html.escape(home)}'>Back to Soundpost</a></p></body></html>"
    )


def _link(error: ApiError) -> str:
    if error.link is None:
        return ""
    label, url = error.link
    return f"<p><a href='{html.escape(url)}'><strong>{html.escape(label)}</strong></a></p>"


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if exc.detail else HTTPStatus(exc.status_code).phrase
    return error_response(
        request, ApiError(exc.status_code, code, detail, headers=dict(exc.headers) if exc.headers else None)
    )


async def handle_storage_error(request: Request, exc: Exception) -> Response:
    """The store failed: one log line naming what to fix, and a 502 or 503 with its own code."""
    assert isinstance(exc, StorageError)
    if isinstance(exc, StorageUnavailable) and exc.unreachable:
        storage_logger.warning("S3 unreachable on %s %s: %s", request.method, request.url.path, exc.advice)
    else:
        storage_logger.log(exc.level, "S3 refused %s %s: %s", request.method, request.url.path, exc.advice)
    return error_response(request, storage_answer(exc))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, ApiError(500, "internal_error", "Something went wrong on our side."))


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    StorageError: handle_storage_error,
    Exception: handle_unexpected,
}

Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_async(handler: object) -> bool:
    """A coroutine function, a partial of one, or an object whose ``__call__`` is one."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    call = handler if inspect.isroutine(handler) else type(handler).__call__
    return inspect.iscoroutinefunction(call)


class ErrorHandlers:
    """An app's exception handlers, chosen the way Starlette's two error layers choose them.

    Starlette's ExceptionMiddleware answers an HTTPException by its status or an
    exception by the nearest class in its MRO; its ServerErrorMiddleware answers
    everything else with the ``Exception`` (or 500) handler. ``service.http.edge.Edge``
    does both jobs with this table.
    """

    def __init__(self, handlers: Mapping[Any, Callable[..., Any]]) -> None:
        for key, handler in handlers.items():
            if not is_async(handler):
                raise TypeError(f"the exception handler for {key!r} must be async: {handler!r}")
        self.by_status: dict[int, Handler] = {
            key: h for key, h in handlers.items() if isinstance(key, int) and key != 500
        }
        self.by_class: dict[type[Exception], Handler] = {
            key: h for key, h in handlers.items() if not isinstance(key, int) and key is not Exception
        }
        self.unexpected: Handler | None = handlers.get(Exception, handlers.get(500))

    def handler_for(self, exc: Exception) -> Handler | None:
        """The handler that answers ``exc``: by status, else by the nearest class, else the unexpected one."""
        handler = self.by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((self.by_class[kind] for kind in type(exc).__mro__ if kind in self.by_class), None)
        return handler if handler is not None else self.unexpected
