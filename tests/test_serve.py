"""``soundpost serve``: the fast event loop and parser, workers, trusted proxies, a root path."""

from __future__ import annotations

import argparse
import importlib.util

import pytest

from service.__main__ import main
from service.serving.options import add_serve_options, loop_and_parser, uvicorn_options
from service.settings import load_settings


def test_serve_picks_uvloop_and_httptools_when_they_are_installed() -> None:
    """uvicorn[standard] is a dependency, so both are importable here and serving uses them."""
    assert importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools")
    assert loop_and_parser() == ("uvloop", "httptools")


def test_serve_options_carry_workers_trusted_proxies_and_the_root_path() -> None:
    """What `soundpost serve` hands uvicorn: worker count, proxy headers from the trusted list, root path."""
    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    args = parser.parse_args(
        ["--workers", "3", "--forwarded-allow-ips", "10.0.0.0/8", "--log-level", "warning"]
    )
    options = uvicorn_options(args, "/soundpost")
    assert options["workers"] == 3
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == "10.0.0.0/8"
    assert options["root_path"] == "/soundpost"
    assert options["access_log"] is False
    assert options["server_header"] is False


def test_root_path_comes_from_the_public_url() -> None:
    """Hosting under a prefix is configured once, by SOUNDPOST_PUBLIC_URL's path."""
    env = {
        "SOUNDPOST_PUBLIC_URL": "https://example.com/soundpost/",
        "SOUNDPOST_SESSION_SECRET": "x" * 40,
        "SOUNDPOST_PROVIDERS": "idp",
        "SOUNDPOST_PROVIDER_IDP_CLIENT_ID": "c",
        "SOUNDPOST_PROVIDER_IDP_CLIENT_SECRET": "s",
        "SOUNDPOST_PROVIDER_IDP_DISCOVERY_URL": "https://idp.example/.well-known/openid-configuration",
        "SOUNDPOST_S3_BUCKET": "soundpost",
    }
    assert load_settings(env).root_path == "/soundpost"


def test_serve_refuses_to_start_with_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken environment stops `serve` with exit status 2 before uvicorn starts."""
    for name in ("SOUNDPOST_PUBLIC_URL", "SOUNDPOST_SESSION_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 2
