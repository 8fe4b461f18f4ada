"""Fixtures, small to large: S3 server → bucket → identity providers → settings → app → clients.

Everything a user would meet runs for real on 127.0.0.1: moto's S3 server, the
identity providers, and the app under uvicorn.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service import devstack
from service.app import create_app
from tests.support import fake_idp
from tests.support.flows import sign_in
from tests.support.servers import bound_socket, serve_asgi
from tests.support.settings import s3_settings
from tests.support.tools import require_tool
from tests.support.webhooks import Receiver, serve_receiver, webhook_env

# Fixtures that start a real peer: a test that uses one, directly or through another fixture, is
# marked ``peers``, so ``python3 run.py test --fast`` (``-m "not peers"``) runs only unit tests.
PEER_FIXTURES = frozenset(
    {
        "s3",
        "_oidc_provider",
        "_github_provider",
        "redis_url",
        "rgw_endpoint",
        "browser",
        "app_url",
        "site",
        "receiver",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches a real peer through its fixtures."""
    for item in items:
        if PEER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.peers)


@contextlib.contextmanager
def serve_app(env: dict[str, str]) -> Iterator[str]:
    """The app under uvicorn with these settings; its public URL is where it listens."""
    with serve_asgi(lambda url: create_app({**env, "SOUNDPOST_PUBLIC_URL": url})) as url:
        yield url


@contextlib.contextmanager
def signed_in(env: dict[str, str], user: str = "alice") -> Iterator[httpx.Client]:
    """The app with these settings, and a client signed in to it through the fake identity provider."""
    with serve_app(env) as url, httpx.Client(base_url=url, follow_redirects=False, timeout=60) as client:
        assert sign_in(client, "fake", user).status_code == 303
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that records what it is sent."""
    with serve_receiver() as hooks:
        yield hooks


@pytest.fixture
def sweeping_env(app_env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    """The app's settings announcing to ``receiver``, with no grace period: a sweep promotes at once."""
    return {**webhook_env(app_env, receiver.url), "SOUNDPOST_STAGING_GRACE": "0"}


@pytest.fixture(scope="session")
def s3() -> Iterator[devstack.S3Endpoint]:
    with devstack.moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3: devstack.S3Endpoint) -> str:
    name = f"test-{secrets.token_hex(6)}"
    devstack.create_bucket(s3, name, ["http://127.0.0.1"])
    return name


@pytest.fixture(scope="session")
def _oidc_provider() -> Iterator[fake_idp.FakeIdP]:
    provider = fake_idp.FakeIdP(kind="oidc")
    with provider.serve():
        yield provider


@pytest.fixture(scope="session")
def _github_provider() -> Iterator[fake_idp.FakeIdP]:
    provider = fake_idp.FakeIdP(kind="github")
    with provider.serve():
        yield provider


@pytest.fixture
def oidc_idp(_oidc_provider: fake_idp.FakeIdP) -> fake_idp.FakeIdP:
    _oidc_provider.reset()
    return _oidc_provider


@pytest.fixture
def github_idp(_github_provider: fake_idp.FakeIdP) -> fake_idp.FakeIdP:
    _github_provider.reset()
    return _github_provider


@pytest.fixture
def app_env(
    s3: devstack.S3Endpoint, bucket: str, oidc_idp: fake_idp.FakeIdP, github_idp: fake_idp.FakeIdP
) -> dict[str, str]:
    """SOUNDPOST_* settings for an app wired to the test S3 and both providers (no public URL yet)."""
    return {
        "SOUNDPOST_SESSION_SECRET": secrets.token_urlsafe(48),
        "SOUNDPOST_PROVIDERS": "fake,hub",
        "SOUNDPOST_PROVIDER_FAKE_TITLE": "Fake OIDC",
        "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": oidc_idp.discovery_url,
        "SOUNDPOST_PROVIDER_FAKE_CLIENT_ID": fake_idp.CLIENT_ID,
        "SOUNDPOST_PROVIDER_FAKE_CLIENT_SECRET": fake_idp.CLIENT_SECRET,
        "SOUNDPOST_PROVIDER_HUB_KIND": "oauth2",
        "SOUNDPOST_PROVIDER_HUB_TITLE": "Hub",
        "SOUNDPOST_PROVIDER_HUB_AUTHORIZE_URL": f"{github_idp.base_url}/authorize",
        "SOUNDPOST_PROVIDER_HUB_TOKEN_URL": f"{github_idp.base_url}/token",
        "SOUNDPOST_PROVIDER_HUB_USERINFO_URL": f"{github_idp.base_url}/user",
        "SOUNDPOST_PROVIDER_HUB_CLIENT_ID": fake_idp.CLIENT_ID,
        "SOUNDPOST_PROVIDER_HUB_CLIENT_SECRET": fake_idp.CLIENT_SECRET,
        **s3_settings(s3, bucket),
        "SOUNDPOST_MAX_UPLOAD_BYTES": str(10 * 1024 * 1024),
    }


@pytest.fixture
def app_url(app_env: dict[str, str]) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1; its public URL is where it listens."""

    def make(base_url: str) -> object:
        return create_app({**app_env, "SOUNDPOST_PUBLIC_URL": base_url})

    with serve_asgi(make) as url:
        yield url


@pytest.fixture
def client(app_url: str) -> Iterator[httpx.Client]:
    """A signed-out browser-ish client: keeps cookies, does not follow redirects."""
    with httpx.Client(base_url=app_url, follow_redirects=False, timeout=10) as c:
        yield c


@pytest.fixture
def alice(client: httpx.Client) -> httpx.Client:
    """A client signed in as alice through the OIDC provider."""
    assert sign_in(client, "fake", "alice").status_code == 303
    return client


@pytest.fixture
def bob(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, follow_redirects=False, timeout=10) as c:
        assert sign_in(c, "fake", "bob").status_code == 303
        yield c


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server from Debian's packages, on a free loopback port, persisting nothing."""
    require_tool(shutil.which("redis-server") is not None, "redis-server", "apt-get install redis-server")
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
