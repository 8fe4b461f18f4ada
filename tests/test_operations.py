"""What operators run it with: liveness, readiness, metrics, request ids and JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service import devstack
from service.app import create_app
from service.observability import JsonFormatter, watch_loop_lag
from tests.conftest import serve_app
from tests.support.flows import sign_in
from tests.support.servers import bound_socket


def sample(client: httpx.Client, name: str, **labels: str) -> float:
    """The current value of one metric sample (0 when it has not been seen yet)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_healthz_answers_ok(client: httpx.Client) -> None:
    """Liveness needs nothing outside the process."""
    answer = client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_readyz_checks_the_bucket_and_the_provider_metadata(client: httpx.Client) -> None:
    """Ready when the bucket answers, the OpenID provider's discovery document loads and the OAuth2 one answers."""
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"s3": "ok", "idp:fake": "ok", "idp:hub": "ok"}}


def test_readyz_is_503_when_the_bucket_goes_missing_naming_the_code_and_setting(
    app_env: dict[str, str], s3: devstack.S3Endpoint
) -> None:
    """A bucket deleted under a running replica means not ready, with the reason (a missing one stops start-up)."""
    bucket = f"ready-{secrets.token_hex(6)}"
    devstack.create_bucket(s3, bucket, ["http://127.0.0.1"])
    with serve_app({**app_env, "SOUNDPOST_S3_BUCKET": bucket}) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        devstack.s3_admin(s3).delete_bucket(Bucket=bucket)
        answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not_ready" and body["checks"]["s3"].startswith("storage_bucket_missing")
    assert "SOUNDPOST_S3_BUCKET" in body["checks"]["s3"]
    assert body["checks"]["idp:fake"] == "ok"


def test_metrics_count_requests_by_route_template_presigns_and_error_codes(alice: httpx.Client) -> None:
    """Counters move by exactly what was done, labelled by template, not raw path."""
    route = {"method": "POST", "route": "/api/upload/presigned-url", "status": "200"}
    before = (
        sample(alice, "soundpost_request_duration_seconds_count", **route),
        sample(alice, "soundpost_presigns_issued_total", kind="post"),
        sample(alice, "soundpost_errors_total", code="not_found"),
        sample(alice, "soundpost_request_duration_seconds_bucket", le="+Inf", **route),
    )
    assert (
        alice.post(
            "/api/upload/presigned-url", json={"filename": "a.wav", "contentType": "audio/wav"}
        ).status_code
        == 200
    )
    assert alice.get("/api/nothing/here").status_code == 404
    after = (
        sample(alice, "soundpost_request_duration_seconds_count", **route),
        sample(alice, "soundpost_presigns_issued_total", kind="post"),
        sample(alice, "soundpost_errors_total", code="not_found"),
        sample(alice, "soundpost_request_duration_seconds_bucket", le="+Inf", **route),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]
    assert 'route="/api/nothing/here"' not in alice.get("/metrics").text


def test_a_request_id_is_taken_from_the_caller_or_made_and_always_echoed(client: httpx.Client) -> None:
    """X-Request-ID ties a client's report to the server's log lines."""
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/healthz").headers["x-request-id"]
    hostile = client.get("/healthz", headers={"X-Request-ID": 'x" injected=1'}).headers["x-request-id"]
    assert hostile != 'x" injected=1' and len(hostile) == 32


def test_access_log_lines_are_json_with_the_request_id(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """One JSON object per request: template, status, duration and the request id."""
    caplog.set_level(logging.INFO, logger="soundpost.access")
    with serve_app({**app_env, "SOUNDPOST_ACCESS_LOG": "true"}) as url:
        started = time.perf_counter()
        httpx.get(f"{url}/api/me", headers={"X-Request-ID": "req-42"})
        elapsed_ms = (time.perf_counter() - started) * 1000
    [record] = [r for r in caplog.records if r.name == "soundpost.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["requestId"] == "req-42"
    assert (line["level"], line["route"], line["status"], line["message"]) == (
        "info",
        "/api/me",
        401,
        "GET /api/me 401",
    )
    assert 0 < line["durationMs"] <= elapsed_ms  # milliseconds, measured inside the client's own wait


def test_the_access_log_is_off_by_default(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    """The hot path formats no log line unless an operator asks for it."""
    caplog.set_level(logging.INFO, logger="soundpost.access")
    client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "soundpost.access"]


def test_a_client_that_leaves_mid_body_is_counted_not_logged_as_an_error(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A presign whose body never finishes arriving is a 499 in metrics and the access log, not a 500."""
    caplog.set_level(logging.INFO)
    route = {"method": "POST", "route": "/api/upload/presigned-url", "status": "499"}
    with serve_app({**app_env, "SOUNDPOST_ACCESS_LOG": "true"}) as url, httpx.Client(base_url=url) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        cookie = "; ".join(f"{name}={value}" for name, value in c.cookies.items())
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                f"POST /api/upload/presigned-url HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
                'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"filename": '.encode()
            )
        for _ in range(500):  # the server notices the closed connection on its own schedule
            if sample(c, "soundpost_request_duration_seconds_count", **route) == 1:
                break
            time.sleep(0.02)
        assert sample(c, "soundpost_request_duration_seconds_count", **route) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    access = [vars(r) for r in caplog.records if r.name == "soundpost.access"]
    assert [r["status"] for r in access if r["route"] == route["route"]] == [499]


@pytest.fixture
def two_workers(app_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``soundpost serve --workers 2`` as a real process tree."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, **app_env, "SOUNDPOST_PUBLIC_URL": url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=sink,
            stderr=sink,
        )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(log.read_text())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_metrics_are_summed_over_several_workers(two_workers: str, tmp_path: Path) -> None:
    """With two worker processes, /metrics reports every request whichever worker answered it."""
    with httpx.Client(base_url=two_workers) as c:
        start = sample(
            c, "soundpost_request_duration_seconds_count", method="GET", route="/healthz", status="200"
        )
        for _ in range(40):
            with httpx.Client(base_url=two_workers) as fresh:  # new connections spread over the workers
                assert fresh.get("/healthz").status_code == 200
        end = sample(
            c, "soundpost_request_duration_seconds_count", method="GET", route="/healthz", status="200"
        )
    assert end - start == 40
    writers = {p.name.rsplit("_", 1)[1] for p in (tmp_path / "metrics").glob("histogram_*.db")}
    assert len(writers) >= 2  # more than one process counted


def test_routes_match_exactly_with_heads_and_a_slash_redirect(client: httpx.Client) -> None:
    """Paths are matched as Starlette matches them: HEAD where GET is, a trailing slash redirected."""
    assert client.head("/healthz").status_code == 200
    slashed = client.get("/healthz/")
    assert slashed.status_code == 307 and slashed.headers["location"].endswith("/healthz")
    assert client.get("/healthzz").status_code == 404
    assert client.post("/healthz").status_code == 405


def test_event_loop_lag_records_how_long_the_loop_was_blocked() -> None:
    """A loop blocked for 0.4 s makes the next tick at least 0.39 s late: one observation past 0.25 s."""

    def past_quarter() -> float:
        count = REGISTRY.get_sample_value("soundpost_event_loop_lag_seconds_count") or 0.0
        within = REGISTRY.get_sample_value("soundpost_event_loop_lag_seconds_bucket", {"le": "0.25"}) or 0.0
        return count - within

    async def block_once() -> None:
        watcher = asyncio.create_task(watch_loop_lag(0.01))
        await asyncio.sleep(0.05)  # the watcher is sleeping on its tick
        time.sleep(0.4)  # noqa: ASYNC251 - the point: a synchronous call that blocks the loop
        await asyncio.sleep(0.05)  # the late tick is observed
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    before = past_quarter()
    asyncio.run(block_once())
    assert past_quarter() - before >= 1


def test_metrics_show_the_event_loop_lag_histogram(client: httpx.Client) -> None:
    """The lifespan starts the tick: /metrics counts its observations as they happen."""
    first = sample(client, "soundpost_event_loop_lag_seconds_count")
    for _ in range(100):
        if sample(client, "soundpost_event_loop_lag_seconds_count") > first:
            break
        time.sleep(0.1)
    assert sample(client, "soundpost_event_loop_lag_seconds_count") > first


def test_while_serving_what_start_up_built_is_kept_out_of_collections(app_env: dict[str, str]) -> None:
    """The lifespan freezes the start-up heap (full collections over it stalled the loop) and thaws it at shut-down."""
    app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000"})
    frozen: list[int] = []

    async def run() -> None:
        async with app.router.lifespan_context(app):
            frozen.append(gc.get_freeze_count())

    asyncio.run(run())
    assert frozen[0] > 10_000  # botocore's models, the routes, the settings
    assert gc.get_freeze_count() == 0
