"""The session layer reads Starlette's cookies, remembers the ones it verified, and never trusts more for it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.session import SessionCookies

SECRET = "session-middleware-test-secret-0123456789"
COOKIE = "soundpost_session"


def app_with(middleware: type) -> Starlette:
    async def sign_in(request: Request) -> JSONResponse:
        request.session["user"] = {"s": request.query_params["who"]}
        return JSONResponse({})

    async def whoami(request: Request) -> JSONResponse:
        user = request.session.get("user")
        request.session.get("scratch")  # a read must not leak into the next request's session
        if "mutate" in request.query_params and user:
            user["s"] = "mallory"
        return JSONResponse({"user": user})

    async def sign_out(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({})

    return Starlette(
        routes=[Route("/in", sign_in), Route("/me", whoami), Route("/out", sign_out, methods=["POST"])],
        middleware=[Middleware(middleware, secret_key=SECRET, session_cookie=COOKIE, max_age=600)],
    )


def signed_cookie(middleware: type, who: str = "alice") -> str:
    with TestClient(app_with(middleware)) as client:
        client.get("/in", params={"who": who})
        return str(client.cookies[COOKIE])


def me(cookie: str, **params: str) -> Any:
    with TestClient(app_with(SessionCookies)) as client:
        return client.get("/me", params=params, headers={"cookie": f"{COOKIE}={cookie}"})


@pytest.fixture
def app_client() -> TestClient:
    return TestClient(app_with(SessionCookies))


def test_a_cookie_made_by_starlettes_session_middleware_is_read() -> None:
    assert me(signed_cookie(SessionMiddleware)).json() == {"user": {"s": "alice"}}


def test_a_cookie_it_makes_is_read_by_starlettes_session_middleware() -> None:
    cookie = signed_cookie(SessionCookies)
    with TestClient(app_with(SessionMiddleware)) as client:
        answer = client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"})
    assert answer.json() == {"user": {"s": "alice"}}


def test_the_set_cookie_header_is_the_one_starlette_sends() -> None:
    def set_cookie(middleware: type) -> str:
        with TestClient(app_with(middleware)) as client:
            answer = client.get("/in", params={"who": "alice"})
            return answer.headers["set-cookie"].split(";", 1)[1]  # the flags; the value carries a timestamp

    assert set_cookie(SessionCookies) == set_cookie(SessionMiddleware)


def test_a_remembered_cookie_gives_each_request_its_own_session(app_client: TestClient) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(SessionCookies)}"}
    assert app_client.get("/me", params={"mutate": "1"}, headers=headers).json() == {"user": {"s": "mallory"}}
    assert app_client.get("/me", headers=headers).json() == {"user": {"s": "alice"}}


def test_a_tampered_cookie_is_no_session_even_after_the_real_one_was_remembered(app_client: TestClient) -> None:
    cookie = signed_cookie(SessionCookies)
    assert app_client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"}).json()["user"] == {"s": "alice"}
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert app_client.get("/me", headers={"cookie": f"{COOKIE}={tampered}"}).json() == {"user": None}


def test_a_remembered_cookie_still_expires(app_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(SessionCookies)}"}
    assert app_client.get("/me", headers=headers).json()["user"] == {"s": "alice"}
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 601)
    assert app_client.get("/me", headers=headers).json() == {"user": None}


def test_a_cookie_signed_in_the_future_is_refused_even_when_remembered(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(SessionCookies)}"}
    assert app_client.get("/me", headers=headers).json()["user"] == {"s": "alice"}
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 5)
    assert app_client.get("/me", headers=headers).json() == {"user": None}


def test_reading_the_session_varies_on_cookie_and_sends_no_cookie(app_client: TestClient) -> None:
    answer = app_client.get("/me", headers={"cookie": f"{COOKIE}={signed_cookie(SessionCookies)}"})
    assert answer.headers["vary"] == "Cookie"
    assert "set-cookie" not in answer.headers


def test_clearing_the_session_expires_the_cookie(app_client: TestClient) -> None:
    answer = app_client.post("/out", headers={"cookie": f"{COOKIE}={signed_cookie(SessionCookies)}"})
    assert answer.headers["set-cookie"].startswith(f"{COOKIE}=null; path=/; expires=Thu, 01 Jan 1970")


def test_the_table_of_remembered_cookies_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SessionCookies, "REMEMBERED", 3)
    app = app_with(SessionCookies)
    cookies = [signed_cookie(SessionCookies, who) for who in ("a", "b", "c", "d", "e")]
    with TestClient(app) as client:
        for cookie in cookies:
            assert client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"}).status_code == 200
    layer = app.middleware_stack
    while not isinstance(layer, SessionCookies):
        layer = layer.app
    assert len(layer.remembered) == 3
    assert [header.decode() for header in layer.remembered] == [f"{COOKIE}={c}" for c in cookies[2:]]
