"""One error shape everywhere; an unexpected failure says nothing about its cause."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from service.app import create_app
from tests.support.servers import serve_asgi


async def explode(request: Request) -> None:
    raise RuntimeError("database password is hunter2")


def test_unexpected_exception_is_a_generic_500_and_logged(app_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    def make(url: str) -> object:
        app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url})
        app.router.routes.append(Route("/explode", explode))
        return app

    with caplog.at_level(logging.ERROR, logger="soundpost"), serve_asgi(make) as url:
        answer = httpx.get(f"{url}/explode")
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal_error", "detail": "Something went wrong on our side."}}
    assert "hunter2" not in answer.text
    assert any("hunter2" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_browser_navigation_to_a_missing_page_gets_an_html_404(client: httpx.Client) -> None:
    answer = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "not_found" in answer.text


def test_every_response_carries_security_headers(client: httpx.Client) -> None:
    answer = client.get("/api/me")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_the_page_has_a_strict_csp(client: httpx.Client, app_env: dict[str, str]) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert f"connect-src 'self' {app_env['SOUNDPOST_S3_ENDPOINT']}" in csp
