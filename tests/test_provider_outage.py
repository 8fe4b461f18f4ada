"""A provider outage: readiness stays bounded and the replica stays ready; sign-in says so plainly."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import httpx

from service.http.health import DEADLINE
from service.identity.providers import PROBE_WINDOW
from tests.conftest import serve_app
from tests.support import fake_idp
from tests.support.flows import sign_in, start_login
from tests.support.servers import bound_socket


@contextlib.contextmanager
def hanging_urls(count: int) -> Iterator[list[str]]:
    """Listening sockets that never accept: connections open, answers never come."""
    sockets = [bound_socket() for _ in range(count)]
    try:
        yield [f"http://127.0.0.1:{s.getsockname()[1]}/.well-known/openid-configuration" for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def dead_url() -> str:
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/.well-known/openid-configuration"


def test_readyz_with_three_hung_providers_answers_within_its_deadline_and_stays_ready(
    app_env: dict[str, str],
) -> None:
    """Checks run at once under one deadline; a provider outage is reported in the body and /metrics, not a 503."""
    with hanging_urls(3) as urls:
        env = {**app_env, "SOUNDPOST_PROVIDERS": "one,two,three"}
        for name, url in zip(("ONE", "TWO", "THREE"), urls, strict=True):
            env |= {
                f"SOUNDPOST_PROVIDER_{name}_DISCOVERY_URL": url,
                f"SOUNDPOST_PROVIDER_{name}_CLIENT_ID": fake_idp.CLIENT_ID,
                f"SOUNDPOST_PROVIDER_{name}_CLIENT_SECRET": fake_idp.CLIENT_SECRET,
            }
        with serve_app(env) as app:
            started = time.monotonic()
            answer = httpx.get(f"{app}/readyz", timeout=60)
            took = time.monotonic() - started
            metrics = httpx.get(f"{app}/metrics").text
    assert took < DEADLINE + 2, took  # one deadline for all: three in a row would take three probes' time
    assert (answer.status_code, answer.json()["status"]) == (200, "degraded")
    checks = answer.json()["checks"]
    assert checks["s3"] == "ok"
    assert all(
        checks[f"idp:{name}"].startswith(("unreachable", "timed out")) for name in ("one", "two", "three")
    )
    assert re.search(r'soundpost_readiness_check_ok\{check="idp:two"\} 0\.0', metrics), metrics
    assert re.search(r'soundpost_readiness_check_ok\{check="s3"\} 1\.0', metrics), metrics


def test_a_signed_in_user_keeps_working_while_the_provider_is_down(app_env: dict[str, str]) -> None:
    """The reason to stay in the load balancer: a session needs no provider."""
    with serve_app(app_env) as app, httpx.Client(base_url=app, follow_redirects=False, timeout=30) as alice:
        assert sign_in(alice, "fake", "alice").status_code == 303
    down = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": dead_url()}
    with serve_app(down) as app, httpx.Client(base_url=app, cookies=alice.cookies, timeout=30) as again:
        assert again.get("/api/me").json()["subject"] == "alice"
        assert httpx.get(f"{app}/readyz", timeout=30).json()["checks"]["idp:fake"].startswith("unreachable")


def test_login_with_the_provider_down_is_503_as_json_and_as_a_page(app_env: dict[str, str]) -> None:
    """Asked live (not only the cached discovery): a clear 503, never a redirect into a dead provider."""
    env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": dead_url()}
    with serve_app(env) as app, httpx.Client(base_url=app, follow_redirects=False, timeout=30) as browser:
        api = browser.get("/auth/login?provider=fake", headers={"Accept": "application/json"})
        page = browser.get("/auth/login?provider=fake", headers={"Accept": "text/html"})
    assert api.status_code == 503 and api.headers["retry-after"] == "5"
    assert api.json()["error"]["code"] == "identity_provider_unavailable"
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "Fake OIDC cannot be reached" in page.text
    assert "href='/auth/login?provider=fake'" in page.text


def test_login_notices_a_provider_that_went_down_after_its_discovery_was_cached(
    app_env: dict[str, str],
) -> None:
    """The cached discovery document is not proof the provider is up: login asks it again (bounded)."""
    provider = fake_idp.FakeIdP(kind="oidc")
    with contextlib.ExitStack() as provider_running:
        provider_running.enter_context(provider.serve())
        env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": provider.discovery_url}
        with serve_app(env) as app, httpx.Client(base_url=app, follow_redirects=False, timeout=30) as browser:
            assert start_login(browser, "?provider=fake").status_code == 302  # discovery loaded and cached
            provider_running.close()  # the provider goes down
            time.sleep(PROBE_WINDOW + 0.5)  # a success within the window stands; past it, login asks again
            answer = browser.get("/auth/login?provider=fake", headers={"Accept": "application/json"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "identity_provider_unavailable"


def test_a_callback_that_cannot_be_completed_offers_to_start_again(app_env: dict[str, str]) -> None:
    """A stale or spent callback: the page links to a fresh sign-in, the JSON detail says to start again."""
    with serve_app(app_env) as app, httpx.Client(base_url=app, follow_redirects=False, timeout=30) as browser:
        url = "/auth/callback/fake?code=spent&state=unknown"
        page = browser.get(url, headers={"Accept": "text/html"})
        api = browser.get(url, headers={"Accept": "application/json"})
    assert page.status_code == 400
    assert "Start again" in page.text and "href='/auth/login?provider=fake'" in page.text
    assert api.json()["error"]["code"] == "invalid_state"
    assert "Sign in again" in api.json()["error"]["detail"]
