"""The session reads Starlette's cookies, remembers the ones it verified, and never trusts more for it.

Soundpost's side is the real layer, ``Edge`` with ``CookieSessions``; Starlette's
side is its own ``SessionMiddleware`` with the same secret, name and lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.http.edge import Edge
from service.http.guards import SiteGuard
from service.identity.session import CookieSessions
from service.observability import RequestRecorder

SECRET = "session-middleware-test-secret-0123456789"
COOKIE = "soundpost_session"


def soundpost() -> Middleware:
    return Middleware(
        Edge,
        guard=SiteGuard((), https=False),
        recorder=RequestRecorder(access_log=False),
        sessions=CookieSessions(SECRET, session_cookie=COOKIE, max_age=600),
    )


def starlette() -> Middleware:
    return Middleware(SessionMiddleware, secret_key=SECRET, session_cookie=COOKIE, max_age=600)


def app_with(layer: Callable[[], Middleware]) -> Starlette:
    async def sign_in(request: Request) -> JSONResponse:
        request.session["user"] = {"s": request.query_params["who"]}
        return JSONResponse({})

    async def whoami(request: Request) -> JSONResponse:
        user = request.session.get("user")
        request.session.get("scratch")  # a read must not leak into the next request's session
        if "mutate" in request.query_params and user:
            user["s"] = "mallory"
        vary = {"vary": request.query_params["vary"]} if "vary" in request.query_params else None
        return JSONResponse({"user": user}, headers=vary)

    async def sign_out(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({})

    return Starlette(
        routes=[Route("/in", sign_in), Route("/me", whoami), Route("/out", sign_out, methods=["POST"])],
        middleware=[layer()],
    )


def signed_cookie(layer: Callable[[], Middleware], who: str = "alice") -> str:
    with TestClient(app_with(layer)) as client:
        client.get("/in", params={"who": who})
        return str(client.cookies[COOKIE])


def me(cookie: str, **params: str) -> Any:
    with TestClient(app_with(soundpost)) as client:
        return client.get("/me", params=params, headers={"cookie": f"{COOKIE}={cookie}"})


@pytest.fixture
def app_client() -> TestClient:
    return TestClient(app_with(soundpost))


def test_a_cookie_made_by_starlettes_session_middleware_is_read() -> None:
    assert me(signed_cookie(starlette)).json() == {"user": {"s": "alice"}}


def test_a_cookie_it_makes_is_read_by_starlettes_session_middleware() -> None:
    cookie = signed_cookie(soundpost)
    with TestClient(app_with(starlette)) as client:
        answer = client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"})
    assert answer.json() == {"user": {"s": "alice"}}


def test_the_set_cookie_header_is_the_one_starlette_sends() -> None:
    def set_cookie(layer: Callable[[], Middleware]) -> str:
        with TestClient(app_with(layer)) as client:
            answer = client.get("/in", params={"who": "alice"})
            return answer.headers["set-cookie"].split(";", 1)[1]  # the flags; the value carries a timestamp

    assert set_cookie(soundpost) == set_cookie(starlette)


def test_a_remembered_cookie_gives_each_request_its_own_session(app_client: TestClient) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(soundpost)}"}
    assert app_client.get("/me", params={"mutate": "1"}, headers=headers).json() == {"user": {"s": "mallory"}}
    assert app_client.get("/me", headers=headers).json() == {"user": {"s": "alice"}}


def test_a_tampered_cookie_is_no_session_even_after_the_real_one_was_remembered(
    app_client: TestClient,
) -> None:
    cookie = signed_cookie(soundpost)
    assert app_client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"}).json()["user"] == {"s": "alice"}
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert app_client.get("/me", headers={"cookie": f"{COOKIE}={tampered}"}).json() == {"user": None}


def test_a_remembered_cookie_still_expires(app_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(soundpost)}"}
    assert app_client.get("/me", headers=headers).json()["user"] == {"s": "alice"}
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 601)
    assert app_client.get("/me", headers=headers).json() == {"user": None}


def test_a_cookie_signed_in_the_future_is_refused_even_when_remembered(
    app_client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {"cookie": f"{COOKIE}={signed_cookie(soundpost)}"}
    assert app_client.get("/me", headers=headers).json()["user"] == {"s": "alice"}
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 5)
    assert app_client.get("/me", headers=headers).json() == {"user": None}


def test_reading_the_session_varies_on_cookie_and_sends_no_cookie(app_client: TestClient) -> None:
    answer = app_client.get("/me", headers={"cookie": f"{COOKIE}={signed_cookie(soundpost)}"})
    assert answer.headers["vary"] == "Cookie"
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize("layer", [soundpost, starlette], ids=["soundpost", "starlette"])
def test_an_answer_that_already_varies_also_varies_on_cookie(layer: Callable[[], Middleware]) -> None:
    with TestClient(app_with(layer)) as client:
        answer = client.get(
            "/me", params={"vary": "Accept"}, headers={"cookie": f"{COOKIE}={signed_cookie(layer)}"}
        )
    assert answer.headers.get_list("vary") == ["Accept, Cookie"]


def test_clearing_the_session_expires_the_cookie(app_client: TestClient) -> None:
    answer = app_client.post("/out", headers={"cookie": f"{COOKIE}={signed_cookie(soundpost)}"})
    assert answer.headers["set-cookie"].startswith(f"{COOKIE}=null; path=/; expires=Thu, 01 Jan 1970")


def remembered_of(app: Starlette) -> dict[bytes, Any]:
    layer: Any = app.middleware_stack
    while not isinstance(layer, Edge):
        layer = layer.app
    remembered: dict[bytes, Any] = layer.sessions.remembered
    return remembered


def test_the_table_of_remembered_cookies_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the newest few session cookies are remembered, keyed by the cookie alone."""
    monkeypatch.setattr(CookieSessions, "REMEMBERED", 3)
    app = app_with(soundpost)
    cookies = [signed_cookie(soundpost, who) for who in ("a", "b", "c", "d", "e")]
    with TestClient(app) as client:
        for cookie in cookies:
            assert client.get("/me", headers={"cookie": f"{COOKIE}={cookie}"}).status_code == 200
    assert [key.decode() for key in remembered_of(app)] == [f"{COOKIE}={c}" for c in cookies[2:]]


def test_other_cookies_cost_the_remembered_table_no_memory() -> None:
    """400 requests with one valid session and 64 KiB of other, varying cookies keep one small entry."""
    app = app_with(soundpost)
    cookie = signed_cookie(soundpost)
    with TestClient(app) as client:
        for n in range(400):
            padding = f"pad{n}=" + "x" * 65536
            header = f"{padding}; {COOKIE}={cookie}; other{n}=y"
            assert client.get("/me", headers={"cookie": header}).json() == {"user": {"s": "alice"}}
    remembered = remembered_of(app)
    assert list(remembered) == [f"{COOKIE}={cookie}".encode()]
    assert sum(len(key) + len(payload) for key, (_, payload) in remembered.items()) < 512


@pytest.mark.parametrize(
    "header",
    [
        "{c}",
        "a=1; {c}; b=2",
        "{name}=stale; {c}",  # the last one counts, as with cookie_parser
        "a=1;{c}",
        '{name}="{value}"',  # quoted: cookie_parser's unquoting
        "x{name}=nope; {c}",
    ],
)
def test_the_session_cookie_is_found_as_starlettes_parser_finds_it(header: str) -> None:
    """The fast lookup of our cookie in a Cookie header agrees with cookie_parser."""
    value = signed_cookie(soundpost)
    text = header.format(c=f"{COOKIE}={value}", name=COOKIE, value=value)
    sessions = CookieSessions(SECRET, session_cookie=COOKIE)
    expected = cookie_parser(text).get(COOKIE)
    assert expected == value
    assert sessions.cookie_value(text.encode("latin-1")) == expected.encode()
