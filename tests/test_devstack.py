"""`soundpost dev`: the embedded stand-ins' settings, under any SOUNDPOST_* the environment sets."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from service import devstack
from tests.support.flows import approve_at_dev_idp, follow_callback, start_login
from tests.support.uppy import same_origin

STAND_INS = devstack.S3Endpoint("http://127.0.0.1:9", "dev-key", "dev-secret", "us-east-1")


def test_the_environment_wins_over_the_stand_ins_values() -> None:
    """A SOUNDPOST_* variable the process has replaces dev's own; other variables are left out."""
    env = devstack.dev_environment(
        "http://127.0.0.1:8000",
        STAND_INS,
        "http://127.0.0.1:9001",
        {"SOUNDPOST_USER_QUOTA_BYTES": "1000", "SOUNDPOST_S3_REGION": "eu-west-1", "HOME": "/root"},
    )
    assert env["SOUNDPOST_USER_QUOTA_BYTES"] == "1000"
    assert env["SOUNDPOST_S3_REGION"] == "eu-west-1"
    assert env["SOUNDPOST_S3_ENDPOINT"] == STAND_INS.url
    assert "HOME" not in env


def test_an_empty_variable_does_not_blank_out_a_stand_in_setting() -> None:
    """`SOUNDPOST_S3_BUCKET=` (set but empty) leaves dev's bucket, as load_settings would read no value."""
    env = devstack.dev_environment(
        "http://127.0.0.1:8000", STAND_INS, "http://idp", {"SOUNDPOST_S3_BUCKET": " "}
    )
    assert env["SOUNDPOST_S3_BUCKET"] == devstack.DEV_BUCKET


@contextlib.contextmanager
def soundpost_dev(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m service dev` on a free port with these extra variables; yields once it answers."""
    port = devstack.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "dev", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"soundpost dev did not start:\n{log.read().decode()}")
                time.sleep(0.2)
            yield url, process
        finally:
            process.terminate()
            process.wait(30)


@pytest.mark.peers
def test_soundpost_dev_applies_a_quota_set_in_the_environment() -> None:
    """With SOUNDPOST_USER_QUOTA_BYTES=1000 in its environment, dev's presign refuses a 1001-byte upload."""
    with (
        soundpost_dev({"SOUNDPOST_USER_QUOTA_BYTES": "1000", "SOUNDPOST_PROVIDER_DEV_TITLE": "Local"}) as (
            url,
            _,
        ),
        httpx.Client(base_url=url) as alice,
    ):
        assert alice.get("/api/providers").json()["providers"][0]["title"] == "Local"
        login = start_login(alice)
        assert login.status_code == 302, login.text
        assert follow_callback(alice, approve_at_dev_idp(login.headers["location"])).status_code == 303
        body = {"filename": "a.wav", "contentType": "audio/wav"}
        fits = alice.post(
            "/api/upload/presigned-url", json={**body, "size": 1000}, headers=same_origin(alice)
        )
        assert fits.status_code == 200, fits.text
        over = alice.post(
            "/api/upload/presigned-url", json={**body, "size": 1001}, headers=same_origin(alice)
        )
        assert over.status_code == 413, over.text
        assert over.json()["error"]["code"] == "quota_exceeded"


@pytest.mark.peers
def test_soundpost_dev_refuses_a_bad_setting_from_the_environment_naming_it() -> None:
    """A malformed SOUNDPOST_* value stops dev at start-up (exit 2) with the setting's name."""
    completed = subprocess.run(
        [sys.executable, "-m", "service", "dev", "--port", str(devstack.free_port())],
        env={**os.environ, "SOUNDPOST_PRESIGN_TTL": "5"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "SOUNDPOST_PRESIGN_TTL must be between 30 and 3600" in completed.stderr.decode()
