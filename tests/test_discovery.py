"""Providers' metadata: our own age, Authlib's public surface only, and a readiness probe bounded in time."""

from __future__ import annotations

import time
from importlib.metadata import version

import httpx
import pytest
from authlib.integrations.starlette_client.apps import StarletteOAuth2App

from service.identity.providers import PROBE_TIMEOUT, UnusableMetadata, check_metadata, new_client
from service.settings import load_settings
from tests.conftest import serve_app
from tests.support.servers import bound_socket

WRITTEN_AGAINST = "1.9.10"


def test_the_authlib_surface_sign_in_uses_is_there(app_env: dict[str, str]) -> None:
    """Written against Authlib 1.9.10: the public methods the flow calls exist, so an upgrade that drops one fails here."""
    settings = load_settings({**app_env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:1"})
    client = new_client(settings.providers[0])
    assert isinstance(client, StarletteOAuth2App), version("authlib")
    for method in (
        "load_server_metadata",
        "create_authorization_url",
        "save_authorize_data",
        "fetch_access_token",
        "parse_id_token",
        "userinfo",
        "create_logout_url",
    ):
        assert callable(getattr(client, method, None)), f"Authlib {version('authlib')} has no {method}"
    for method in ("get_state_data", "clear_state_data"):
        assert callable(getattr(client.framework, method, None)), f"Authlib {version('authlib')}: {method}"
    assert isinstance(client.server_metadata, dict), f"written against Authlib {WRITTEN_AGAINST}"


@pytest.mark.parametrize("missing", ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"])
def test_a_discovery_document_without_what_sign_in_needs_is_named(missing: str) -> None:
    """The error says which field is missing, for the operator's log line."""
    document = {name: f"https://idp.example/{name}" for name in ("issuer", "authorization_endpoint")}
    document |= {"token_endpoint": "https://idp.example/t", "jwks_uri": "https://idp.example/j"}
    del document[missing]
    with pytest.raises(UnusableMetadata, match=missing):
        check_metadata(document)


def test_readiness_is_bounded_when_the_provider_hangs(app_env: dict[str, str]) -> None:
    """A provider that accepts connections and never answers makes /readyz a prompt answer, not a stall:
    the replica stays ready ("degraded"), since signed-in users need no provider."""
    hanging = bound_socket()  # listens, never accepts: connections open, answers never come
    try:
        discovery = f"http://127.0.0.1:{hanging.getsockname()[1]}/.well-known/openid-configuration"
        env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": discovery}
        with serve_app(env) as url:
            started = time.monotonic()
            answer = httpx.get(f"{url}/readyz", timeout=30)
            took = time.monotonic() - started
    finally:
        hanging.close()
    assert (answer.status_code, answer.json()["status"]) == (200, "degraded")
    assert answer.json()["checks"]["idp:fake"] == "unreachable (TimeoutError)"
    assert took < PROBE_TIMEOUT + 2
