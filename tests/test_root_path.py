"""Hosting under a path prefix (same-origin with another app behind a reverse proxy)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.app import create_app
from tests.support.flows import sign_in
from tests.support.servers import serve_asgi

PREFIX = "/soundpost"


def strip_prefix(request: httpx.Request) -> None:
    """What the reverse proxy does (nginx: ``location /soundpost/ { proxy_pass http://app/; }``)."""
    request.url = request.url.copy_with(path=request.url.path.removeprefix(PREFIX) or "/")


@pytest.fixture
def prefixed(app_env: dict[str, str]) -> Iterator[httpx.Client]:
    """The app with a public URL ending in /soundpost, behind a proxy that strips the prefix."""
    with serve_asgi(
        lambda url: create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url}), root_path=PREFIX
    ) as url:
        hooks = {"request": [strip_prefix]}
        origin = url.removesuffix(PREFIX)
        with httpx.Client(base_url=origin, follow_redirects=False, timeout=10, event_hooks=hooks) as client:
            yield client


def test_sign_in_lands_on_the_prefixed_page(prefixed: httpx.Client) -> None:
    final = sign_in(prefixed, "fake", "alice")
    assert final.headers["location"] == f"{PREFIX}/"
    assert prefixed.get(f"{PREFIX}/api/me").json()["subject"] == "alice"


def test_login_links_carry_the_prefix(prefixed: httpx.Client) -> None:
    providers = prefixed.get(f"{PREFIX}/api/providers").json()["providers"]
    assert {p["loginUrl"] for p in providers} == {
        f"{PREFIX}/auth/login?provider=fake",
        f"{PREFIX}/auth/login?provider=hub",
    }


def test_sign_out_returns_to_the_prefixed_page(prefixed: httpx.Client) -> None:
    sign_in(prefixed, "fake", "alice")
    answer = prefixed.post(f"{PREFIX}/auth/logout", headers={"Accept": "text/html"})
    assert (answer.status_code, answer.headers["location"]) == (303, f"{PREFIX}/")


def test_api_errors_stay_json_for_browsers_under_the_prefix(prefixed: httpx.Client) -> None:
    answer = prefixed.get(f"{PREFIX}/api/me", headers={"Accept": "text/html"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_signed_in"


def test_the_cookie_is_scoped_to_the_prefix(prefixed: httpx.Client) -> None:
    final = sign_in(prefixed, "fake", "alice")
    assert f"path={PREFIX}" in final.headers["set-cookie"].lower()


def test_uppy_reaches_its_routes_under_the_prefix(prefixed: httpx.Client) -> None:
    """Uppy pointed at /soundpost signs uploads with the cookie scoped to that path."""
    sign_in(prefixed, "fake", "alice")
    signed = prefixed.get(f"{PREFIX}/s3/params", params={"filename": "a.wav", "type": "audio/wav"})
    assert signed.status_code == 200, signed.text
    assert signed.json()["method"] == "POST"
    origin = str(prefixed.base_url).rstrip("/")
    created = prefixed.post(
        f"{PREFIX}/s3/multipart",
        json={"filename": "a.wav", "type": "audio/wav", "metadata": {}},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert created.status_code == 200, created.text
    assert prefixed.get(f"{PREFIX}/api/uploads").json() == {"uploads": [], "nextCursor": None}
