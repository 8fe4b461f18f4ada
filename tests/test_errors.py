"""One error shape everywhere; an unexpected failure says nothing about its cause."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.middleware.httpsredirect import HTTPSRedirectMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.app import create_app
from service.errors import ApiError
from service.http.handlers import ErrorHandlers
from tests.support import raw_http
from tests.support.servers import serve_asgi


async def explode(request: Request) -> None:
    raise RuntimeError("database password is hunter2")


async def not_mine(request: Request) -> None:
    raise ApiError(404, "upload_not_found", "No such upload.")


def test_unexpected_exception_is_a_generic_500_and_logged(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    def make(url: str) -> object:
        app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url})
        app.router.routes.append(Route("/explode", explode))
        return app

    with caplog.at_level(logging.ERROR, logger="soundpost"), serve_asgi(make) as url:
        answer = httpx.get(f"{url}/explode")
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {"code": "internal_error", "detail": "Something went wrong on our side."}
    }
    assert "hunter2" not in answer.text
    assert any("hunter2" in (r.exc_text or "") or r.exc_info for r in caplog.records)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_after_a_500_the_keep_alive_connection_serves_the_next_request_and_the_error_is_logged_once(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture, parser: str
) -> None:
    """A 500 is a complete answer on a connection that stays open, and one log record carries its traceback."""

    def make(url: str) -> object:
        app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url})
        app.router.routes.append(Route("/explode", explode))
        return app

    with serve_asgi(make, parser=parser) as url, caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn").addHandler(caplog.handler)  # uvicorn's loggers do not propagate
        try:
            with raw_http.connect(url) as conn:
                conn.sendall(raw_http.get("/explode"))
                status, headers, body = raw_http.read_response(conn)
                conn.sendall(raw_http.get("/healthz"))
                after = raw_http.read_response(conn)
        finally:
            logging.getLogger("uvicorn").removeHandler(caplog.handler)
    assert status == 500
    assert b"internal_error" in body
    assert headers.get("connection", "keep-alive") != "close"
    assert after[0] == 200 and after[2] == b'{"status":"ok"}'
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1, [record.getMessage() for record in tracebacks]
    exc_info = tracebacks[0].exc_info
    assert tracebacks[0].name == "soundpost" and exc_info is not None and "hunter2" in str(exc_info[1])


def test_error_answers_carry_the_security_headers_request_id_and_metrics(app_env: dict[str, str]) -> None:
    """Unexpected and expected errors alike pass through the edge layer: headers, request id, a metric."""

    def make(url: str) -> object:
        app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url})
        app.router.routes += [Route("/boom", explode), Route("/not-mine", not_mine)]
        return app

    with serve_asgi(make) as url:
        exploded = httpx.get(f"{url}/boom", headers={"X-Request-ID": "trace-500"})
        missing = httpx.get(f"{url}/not-mine", headers={"X-Request-ID": "trace-404"})
        metrics = httpx.get(f"{url}/metrics").text
    for answer, status, request_id in ((exploded, 500, "trace-500"), (missing, 404, "trace-404")):
        assert answer.status_code == status
        assert answer.headers["x-request-id"] == request_id
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
    assert missing.json()["error"]["code"] == "upload_not_found"
    assert 'soundpost_request_duration_seconds_count{method="GET",route="/boom",status="500"} 1.0' in metrics
    assert (
        'soundpost_request_duration_seconds_count{method="GET",route="/not-mine",status="404"} 1.0' in metrics
    )


async def answer(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(type(exc).__name__)


async def teapot(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("teapot")


def test_error_handlers_are_chosen_as_starlettes_error_layers_choose_them() -> None:
    """An HTTPException by its status first, else the nearest class, else the handler for the unexpected."""
    handlers = ErrorHandlers({HTTPException: answer, 418: teapot, LookupError: answer, Exception: explode})
    assert handlers.handler_for(HTTPException(418)) is teapot
    assert handlers.handler_for(HTTPException(404)) is answer
    assert handlers.handler_for(KeyError("x")) is answer  # KeyError is a LookupError
    assert handlers.handler_for(ValueError("x")) is explode
    assert ErrorHandlers({}).handler_for(ValueError("x")) is None


def test_a_sync_exception_handler_is_refused_at_start_up() -> None:
    def sync(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("")

    with pytest.raises(TypeError, match="must be async"):
        ErrorHandlers({ValueError: sync})


def test_the_app_is_the_edge_layer_over_the_router_and_takes_no_middleware(app_env: dict[str, str]) -> None:
    """Every concern of a layer lives in the edge layer; there is no middleware list to add to and skip."""
    app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000"})
    assert app.edge.app is app.router
    with pytest.raises(AttributeError):
        app.add_middleware(HTTPSRedirectMiddleware)  # type: ignore[attr-defined]


def test_browser_navigation_to_a_missing_page_gets_an_html_404(client: httpx.Client) -> None:
    answer = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "not_found" in answer.text
