"""An S3 that answers but refuses: a clear 502/503 with its own code and a log line naming what to fix.

Against real servers where one can show it: moto for a bucket that does not exist,
radosgw for credentials it refuses (moto checks none), and a loopback server
answering S3's XML errors for throttling, 5xx and clock skew, which no real server
does on demand.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator

import httpx
import pytest

from service import devstack
from service.app import create_app
from service.storage.client import StorageMisconfigured
from tests.conftest import serve_app
from tests.support import uppy
from tests.support.flows import sign_in
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3_errors import RefusingS3
from tests.support.servers import bound_socket


@pytest.fixture
def refusing_s3() -> Iterator[tuple[RefusingS3, str]]:
    server = RefusingS3()
    with server.serve() as url:
        yield server, url


def s3_routes(c: httpx.Client) -> dict[str, httpx.Response]:
    """Two routes that call S3 (a listing, a multipart create), as a browser calls them."""
    return {
        "list": c.get("/api/uploads"),
        "create": uppy.create(c, "a.wav", "audio/wav", {"name": "a.wav", "type": "audio/wav"}),
    }


def storage_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "soundpost.storage"]


@pytest.mark.parametrize(
    ("status", "s3_code", "retry_after"),
    [(503, "SlowDown", "5"), (500, "InternalError", "5"), (403, "RequestTimeTooSkewed", "30")],
    ids=["throttled", "5xx", "clock-skew"],
)
def test_throttling_5xx_and_clock_skew_are_503_storage_unavailable_with_retry_after(
    app_env: dict[str, str],
    refusing_s3: tuple[RefusingS3, str],
    caplog: pytest.LogCaptureFixture,
    status: int,
    s3_code: str,
    retry_after: str,
) -> None:
    """What passes or what the operator fixes without a redeploy is a 503 with a wait, never a 500."""
    server, endpoint = refusing_s3
    with serve_app({**app_env, "SOUNDPOST_S3_ENDPOINT": endpoint}) as url, httpx.Client(base_url=url) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        server.error = (status, s3_code)
        with caplog.at_level(logging.WARNING, logger="soundpost"):
            answers = s3_routes(c)
    for name, answer in answers.items():
        assert (name, answer.status_code) == (name, 503), answer.text
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert answer.headers["retry-after"] == retry_after
    logged = storage_log(caplog)
    assert len(logged) == 2 and all(s3_code in r.getMessage() for r in logged)
    if s3_code == "RequestTimeTooSkewed":
        assert all(r.levelno == logging.ERROR and "clock" in r.getMessage() for r in logged)


@pytest.mark.parametrize(
    ("status", "s3_code", "code", "names"),
    [
        (404, "NoSuchBucket", "storage_bucket_missing", "SOUNDPOST_S3_BUCKET"),
        (403, "AccessDenied", "storage_credentials_refused", "SOUNDPOST_S3_ACCESS_KEY_ID"),
        (403, "InvalidAccessKeyId", "storage_credentials_refused", "SOUNDPOST_S3_SECRET_ACCESS_KEY"),
        (400, "AuthorizationQueryParametersError", "storage_error", "AuthorizationQueryParametersError"),
    ],
    ids=["no-such-bucket", "access-denied", "invalid-key", "anything-else"],
)
def test_what_only_the_operator_can_fix_is_502_with_its_own_code_and_an_error_log_naming_the_setting(
    app_env: dict[str, str],
    refusing_s3: tuple[RefusingS3, str],
    caplog: pytest.LogCaptureFixture,
    status: int,
    s3_code: str,
    code: str,
    names: str,
) -> None:
    """A missing bucket or refused credentials after start-up: 502, its code, one ERROR line per request."""
    server, endpoint = refusing_s3
    with serve_app({**app_env, "SOUNDPOST_S3_ENDPOINT": endpoint}) as url, httpx.Client(base_url=url) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        server.error = (status, s3_code)
        with caplog.at_level(logging.WARNING, logger="soundpost"):
            answers = s3_routes(c)
        ready = c.get("/readyz")
    for name, answer in answers.items():
        assert (name, answer.status_code) == (name, 502), answer.text
        assert answer.json()["error"]["code"] == code
        assert "retry-after" not in answer.headers
    logged = storage_log(caplog)
    assert [r.levelno for r in logged] == [logging.ERROR, logging.ERROR]
    assert all(names in r.getMessage() for r in logged)
    assert ready.status_code == 503 and ready.json()["checks"]["s3"].startswith(code)


def test_a_bucket_deleted_after_start_up_is_502_storage_bucket_missing(
    app_env: dict[str, str], s3: devstack.S3Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """moto answers NoSuchBucket once the bucket is gone; the route says so and the log names the setting."""
    bucket = f"gone-{secrets.token_hex(6)}"
    devstack.create_bucket(s3, bucket, ["http://127.0.0.1"])
    with serve_app({**app_env, "SOUNDPOST_S3_BUCKET": bucket}) as url, httpx.Client(base_url=url) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        devstack.s3_admin(s3).delete_bucket(Bucket=bucket)
        with caplog.at_level(logging.ERROR, logger="soundpost"):
            answer = c.get("/api/uploads")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "storage_bucket_missing"
    assert any(
        bucket in r.getMessage() and "SOUNDPOST_S3_BUCKET" in r.getMessage() for r in storage_log(caplog)
    )


def start(env: dict[str, str]) -> None:
    """Run the app's lifespan start-up and shut-down, as uvicorn does before serving."""
    app = create_app({**env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000"})

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(run())


def test_start_up_fails_on_a_bucket_that_does_not_exist_naming_it_and_the_setting(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Only the operator can fix a missing bucket, so the service refuses to start and says which setting."""
    with caplog.at_level(logging.ERROR, logger="soundpost"), pytest.raises(StorageMisconfigured) as refused:
        start({**app_env, "SOUNDPOST_S3_BUCKET": "no-such-bucket-here"})
    assert "'no-such-bucket-here'" in str(refused.value) and "SOUNDPOST_S3_BUCKET" in str(refused.value)
    messages = [r.getMessage() for r in storage_log(caplog) if r.levelno == logging.ERROR]
    assert messages == [f"cannot start: {refused.value}"]


@pytest.mark.parametrize(
    ("field", "s3_code"),
    [
        ("SOUNDPOST_S3_SECRET_ACCESS_KEY", "SignatureDoesNotMatch"),
        ("SOUNDPOST_S3_ACCESS_KEY_ID", "InvalidAccessKeyId"),
    ],
    ids=["wrong-secret", "unknown-key"],
)
def test_start_up_fails_on_credentials_radosgw_refuses_naming_the_settings(
    app_env: dict[str, str],
    rgw_endpoint: devstack.S3Endpoint,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    field: str,
    s3_code: str,
) -> None:
    """radosgw checks signatures (moto does not): a wrong key or secret stops start-up, naming both settings."""
    bucket = f"creds-{secrets.token_hex(6)}"
    devstack.create_bucket(rgw_endpoint, bucket, ["http://127.0.0.1"])
    env = {
        **app_env,
        "SOUNDPOST_S3_ENDPOINT": rgw_endpoint.url,
        "SOUNDPOST_S3_REGION": rgw_endpoint.region,
        "SOUNDPOST_S3_BUCKET": bucket,
        "SOUNDPOST_S3_ACCESS_KEY_ID": rgw_endpoint.access_key,
        "SOUNDPOST_S3_SECRET_ACCESS_KEY": rgw_endpoint.secret_key,
    }
    start(env)  # the right credentials start
    with caplog.at_level(logging.ERROR, logger="soundpost"), pytest.raises(StorageMisconfigured) as refused:
        start({**env, field: "wrong" + secrets.token_hex(8)})
    assert s3_code in str(refused.value)
    assert "SOUNDPOST_S3_ACCESS_KEY_ID" in str(refused.value)
    assert "SOUNDPOST_S3_SECRET_ACCESS_KEY" in str(refused.value)
    assert [r.getMessage() for r in storage_log(caplog) if r.levelno == logging.ERROR] == [
        f"cannot start: {refused.value}"
    ]


def test_start_up_goes_on_when_s3_does_not_answer(app_env: dict[str, str]) -> None:
    """A stopped S3 is not the operator's setting to fix: start-up proceeds (and /readyz says unreachable)."""
    with bound_socket() as dead:
        port = dead.getsockname()[1]
    start(
        {**app_env, "SOUNDPOST_S3_ENDPOINT": f"http://127.0.0.1:{port}", "SOUNDPOST_S3_CONNECT_TIMEOUT": "1"}
    )
