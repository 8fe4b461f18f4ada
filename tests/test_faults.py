"""Faults: S3 or the identity provider stopped and started again, as real processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from service import devstack
from tests.conftest import serve_app
from tests.support import fake_idp
from tests.support.flows import approve_at_dev_idp, approve_at_idp, follow_callback, sign_in, start_login
from tests.support.servers import port_of
from tests.support.settings import dev_provider_settings

BODY = {"filename": "a.wav", "contentType": "audio/wav"}


def test_with_s3_stopped_readiness_fails_presigning_goes_on_and_both_recover(app_env: dict[str, str]) -> None:
    """Presigning is local; readiness reports S3 unreachable until the server is back on its port."""
    with contextlib.ExitStack() as first_s3:
        s3 = first_s3.enter_context(devstack.moto_s3())
        devstack.create_bucket(s3, "faults", ["http://127.0.0.1"])
        env = {**app_env, "SOUNDPOST_S3_ENDPOINT": s3.url, "SOUNDPOST_S3_BUCKET": "faults"}
        with serve_app(env) as url, httpx.Client(base_url=url, timeout=60) as c:
            assert sign_in(c, "fake", "alice").status_code == 303
            assert c.get("/readyz").status_code == 200
            first_s3.close()  # S3 stops

            down = c.get("/readyz")
            assert down.status_code == 503
            assert down.json()["checks"]["s3"].startswith("unreachable")
            assert c.post("/api/upload/presigned-url", json=BODY).status_code == 200
            assert c.get("/healthz").status_code == 200

            with devstack.moto_s3(port_of(s3.url)):  # S3 is back where it was
                assert c.get("/readyz").json() == {
                    "status": "ready",
                    "checks": {"s3": "ok", "idp:fake": "ok", "idp:hub": "ok"},
                }


def test_with_the_provider_stopped_sign_in_is_a_503_page_and_recovers(app_env: dict[str, str]) -> None:
    """A sign-in caught mid-way, a fresh sign-in and readiness all say the provider is down, then recover."""
    provider = fake_idp.FakeIdP(kind="oidc")
    with contextlib.ExitStack() as first_run:
        url = first_run.enter_context(provider.serve())
        env = {
            **app_env,
            "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": provider.discovery_url,
            "SOUNDPOST_IDP_METADATA_TTL": "0",
        }
        with serve_app(env) as app, httpx.Client(base_url=app) as c:
            login = start_login(c, "?provider=fake")
            callback = approve_at_idp(login.headers["location"])
            first_run.close()  # the provider stops before the code is exchanged

            page = {"Accept": "text/html"}
            caught = follow_callback_with(c, callback, page)
            assert caught.status_code == 503 and caught.headers["retry-after"]
            assert "identity_provider_unavailable" in caught.text and "<h1>" in caught.text
            fresh = c.get("/auth/login?provider=fake", headers=page)
            assert fresh.status_code == 503 and "identity_provider_unavailable" in fresh.text
            ready = c.get("/readyz")  # still ready: signed-in users need no provider (operations.md)
            assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
            assert ready.json()["checks"]["idp:fake"].startswith("unreachable")

            with provider.serve(port=port_of(url)):
                assert sign_in(c, "fake", "alice").status_code == 303
                assert c.get("/api/me").json()["subject"] == "alice"
                assert c.get("/readyz").json()["status"] == "ready"


def follow_callback_with(client: httpx.Client, callback_url: str, headers: dict[str, str]) -> httpx.Response:
    parts = httpx.URL(callback_url)
    return client.get(f"{parts.path}?{parts.query.decode()}", headers=headers)


def test_discovery_metadata_is_cached_for_its_lifetime(
    app_env: dict[str, str], oidc_idp: fake_idp.FakeIdP
) -> None:
    """With the default lifetime, many sign-ins fetch the discovery document once."""
    with serve_app(app_env) as url, httpx.Client(base_url=url) as c:
        before = oidc_idp.discovery_requests
        for _ in range(3):
            assert sign_in(c, "fake", "alice").status_code == 303
    assert oidc_idp.discovery_requests - before == 1


def test_discovery_metadata_is_fetched_again_once_stale(
    app_env: dict[str, str], oidc_idp: fake_idp.FakeIdP
) -> None:
    """With a lifetime of zero, every step of a sign-in that needs the document fetches it again."""
    with serve_app({**app_env, "SOUNDPOST_IDP_METADATA_TTL": "0"}) as url, httpx.Client(base_url=url) as c:
        before = oidc_idp.discovery_requests
        for _ in range(3):
            assert sign_in(c, "fake", "alice").status_code == 303
    assert oidc_idp.discovery_requests - before == 2 * 3  # at the login and at the callback


@pytest.mark.parametrize("ttl", ["0", "3600"])
def test_the_dev_provider_stopped_and_restarted_on_its_port(app_env: dict[str, str], ttl: str) -> None:
    """oidc-provider-mock goes away mid sign-in: 503 pages; back on its port (new keys), sign-in works again."""
    port = devstack.free_port()
    page = {"Accept": "text/html"}
    with contextlib.ExitStack() as first_run:
        issuer = first_run.enter_context(devstack.dev_identity_provider(port=port))
        with (
            serve_app({**app_env, **dev_provider_settings(issuer), "SOUNDPOST_IDP_METADATA_TTL": ttl}) as app,
            httpx.Client(base_url=app) as c,
        ):
            login = start_login(c)
            assert login.status_code == 302
            callback = approve_at_dev_idp(login.headers["location"], "alice")
            first_run.close()  # the provider stops before the code is exchanged

            caught = follow_callback_with(c, callback, page)
            assert caught.status_code == 503 and "identity_provider_unavailable" in caught.text
            if ttl == "0":  # metadata is fetched on every sign-in, so a fresh one finds the provider down
                fresh = c.get("/auth/login", headers=page)
                assert fresh.status_code == 503 and "identity_provider_unavailable" in fresh.text
            assert c.get("/api/me").status_code == 401

            with devstack.dev_identity_provider(port=port):
                login = start_login(c)
                assert login.status_code == 302
                done = follow_callback(c, approve_at_dev_idp(login.headers["location"], "bob"))
                assert done.status_code == 303, done.text
                assert c.get("/api/me").json()["subject"] == "bob"


def test_the_same_callback_works_once_the_provider_is_back(app_env: dict[str, str]) -> None:
    """A 503 at the code exchange keeps the sign-in state, so retrying the callback URL signs in."""
    provider = fake_idp.FakeIdP(kind="oidc")
    with contextlib.ExitStack() as first_run:
        url = first_run.enter_context(provider.serve())
        env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": provider.discovery_url}
        with serve_app(env) as app, httpx.Client(base_url=app) as c:
            login = start_login(c, "?provider=fake")
            callback = approve_at_idp(login.headers["location"])
            first_run.close()  # the provider stops before the code is exchanged

            caught = follow_callback(c, callback)
            assert caught.status_code == 503 and caught.headers["retry-after"]
            assert caught.json()["error"]["code"] == "identity_provider_unavailable"

            with provider.serve(port=port_of(url)):
                retried = follow_callback(c, callback)
                assert retried.status_code == 303, retried.text
                assert c.get("/api/me").json()["subject"] == "alice"
                assert follow_callback(c, callback).json()["error"]["code"] == "invalid_state"  # once only


def test_readiness_sees_the_provider_go_down_within_seconds(app_env: dict[str, str]) -> None:
    """/readyz reflects the provider within PROBE_WINDOW seconds, not the metadata's hour, as "degraded":
    a replica whose provider is down stays in the load balancer."""
    from service.identity.providers import PROBE_TIMEOUT, PROBE_WINDOW

    provider = fake_idp.FakeIdP(kind="oidc")
    with contextlib.ExitStack() as first_run:
        url = first_run.enter_context(provider.serve())
        env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": provider.discovery_url}
        with serve_app(env) as app, httpx.Client(base_url=app, timeout=30) as c:
            assert sign_in(c, "fake", "alice").status_code == 303
            assert c.get("/readyz").json()["status"] == "ready"
            first_run.close()
            stopped = time.monotonic()
            while (ready := c.get("/readyz")).json()["status"] == "ready":
                assert time.monotonic() - stopped < PROBE_WINDOW + 1, "readiness still ok long after"
                time.sleep(0.2)
            assert ready.json()["checks"]["idp:fake"].startswith("unreachable")
            assert ready.status_code == 200  # degraded: the replica stays in the load balancer
            assert time.monotonic() - stopped < PROBE_WINDOW + PROBE_TIMEOUT + 1
            with provider.serve(port=port_of(url)):
                assert c.get("/readyz").json()["status"] == "ready"  # back at the next check
