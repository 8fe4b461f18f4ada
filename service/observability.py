"""What operators see: request ids, Prometheus metrics and structured JSON logs.

``service.http.edge.Edge`` reads or makes the request id, times each request and hands
it to ``RequestRecorder``, which adds it to one histogram by route template: little work,
as it runs on the presign hot path. A client that leaves mid-request
(``ClientDisconnect`` while its body is read) is counted as status 499, not logged
as a server error. An access-log line is formatted only when
``SOUNDPOST_ACCESS_LOG`` is on; paths are logged without their query string,
which can carry OAuth codes and state.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``soundpost
serve`` does it for you) so ``/metrics`` sums every worker's numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from service.core.entropy import token_hex

logger = logging.getLogger("soundpost.access")

# nginx's status for "client closed the request": counted and logged, never sent.
CLIENT_CLOSED = 499

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

# One histogram answers both "how many" (its _count) and "how long", by method, route template and
# status, as OpenTelemetry's http.server.request.duration does: one metric update per request, not two.
LATENCY = Histogram(
    "soundpost_request_duration_seconds",
    "Time to answer an HTTP request; _count counts requests",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRESIGNS = Counter("soundpost_presigns_issued", "Presigned upload requests issued", ["kind"])
# Looked up once: labels() takes a lock and builds a key, on the presign hot path.
PRESIGNED = {kind: PRESIGNS.labels(kind) for kind in ("post", "put", "multipart", "part")}
UPLOADS_CONFIRMED = Counter("soundpost_uploads_confirmed", "Uploads confirmed as audio")
ERRORS = Counter("soundpost_errors", "Error responses by code", ["code"])
# A blocked event loop delays every request at once; this shows it before users do.
LOOP_LAG = Histogram(
    "soundpost_event_loop_lag_seconds",
    "How late a periodic tick of the event loop ran",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LOOP_TICK_SECONDS = 0.5


async def watch_loop_lag(interval: float = LOOP_TICK_SECONDS) -> None:
    """For the process's life: sleep ``interval``, observe how much later than asked the loop woke us."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(interval)
        LOOP_LAG.observe(max(0.0, time.monotonic() - asked - interval))


@contextlib.contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """Keep what start-up built (botocore's models, routes) out of later collections while serving.

    Each full collection walked those objects: the loop stalled about 100 ms each time
    under load (presign p99 85-145 ms with 10,000 users, 15-30 ms frozen; bench/README.md).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()  # an app stopped in a longer-lived process (tests) leaves nothing pinned


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one (128 random bits, hex)."""
    if header:
        value = header.decode("latin-1")
        if _GOOD_REQUEST_ID.match(value):
            return value
    return token_hex(16)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/uploads/{id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestRecorder:
    """The latency histogram for each answered request, and the access-log line when it is on.

    The histogram child for each (method, route, status) is looked up once and
    kept: ``labels()`` takes a lock and builds a tuple key on every call.
    """

    def __init__(self, *, access_log: bool) -> None:
        self.access_log = access_log
        self.children: dict[tuple[str, str, int], Histogram] = {}

    def record(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = route_template(scope)
        method = scope["method"]
        latency = self.children.get((method, route, status))
        if latency is None:
            latency = self.children[method, route, status] = LATENCY.labels(method, route, str(status))
        latency.observe(elapsed)
        if self.access_log:
            logger.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "requestId": request_id,
                    "route": route,
                    "status": status,
                    "durationMs": round(elapsed * 1000, 2),
                },
            )


async def metrics(request: Request) -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# --- structured logs -----------------------------------------------------------

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_encode = msgspec.json.Encoder(enc_hook=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["requestId"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr for the service and uvicorn's own loggers."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
