"""Event pushes that stop are noticed: the sweeper's promotions while events are on raise a metric, a log line
naming the fix and a readiness detail."""

from __future__ import annotations

import contextlib
import re
import time

import httpx
import pytest

from service import devstack
from service.app import create_app
from service.event_pushes import PUSHES
from tests.support import audio_samples, uppy
from tests.support.bucket import run_bucket_setup
from tests.support.flows import sign_in
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import new_bucket
from tests.support.servers import bound_socket, serve_asgi
from tests.support.settings import s3_settings
from tests.test_notifications import PushTarget, wait_for_topic

pytestmark = pytest.mark.peers  # radosgw, started by the tests themselves


@pytest.fixture
def push_target(request: pytest.FixtureRequest) -> PushTarget:
    """A bucket of its own (pushes that fail may stall its topic), set up with events on and pushing."""
    endpoint: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
    with bound_socket() as sock:
        port = sock.getsockname()[1]
    target = PushTarget(endpoint, new_bucket(endpoint), port, "t" * 40)
    done = run_bucket_setup(target.setup_env())
    assert done.returncode == 0, done.stderr
    wait_for_topic(target)
    return target


def serve_on(env: dict[str, str], port: int) -> contextlib.AbstractContextManager[str]:
    """The app on the port the bucket's topic pushes to (so it can stop and come back there)."""
    return serve_asgi(lambda url: create_app({**env, "SOUNDPOST_PUBLIC_URL": url}), port=port)


def missed_total(app: str) -> float:
    found = re.search(r"^soundpost_event_pushes_missed_total (\S+)$", httpx.get(f"{app}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_uploads_no_push_promoted_are_swept_and_reported_with_the_fix(
    app_env: dict[str, str], push_target: PushTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """The bucket's notification no longer covers uploads, so they bring no push: the sweeper promotes them, and the metric,
    a WARNING naming the fix and /readyz (still 200, "degraded") say so."""
    env = {
        **app_env,
        **s3_settings(push_target.endpoint, push_target.bucket),
        "SOUNDPOST_EVENTS_TOKEN": push_target.token,
        "SOUNDPOST_STAGING_GRACE": "1",
        "SOUNDPOST_SWEEP_INTERVAL": "1",
    }
    with (
        caplog.at_level("WARNING", logger="soundpost.events"),
        serve_on(env, push_target.port) as app,
        httpx.Client(base_url=app, follow_redirects=False) as alice,
    ):
        assert sign_in(alice, "fake", "alice").status_code == 303
        assert httpx.get(f"{app}/readyz", timeout=30).json()["checks"]["events"] == "ok"
        before = missed_total(app)
        # a setup run with another key prefix: the notification now watches elsewhere
        wrong = run_bucket_setup({**push_target.setup_env(), "SOUNDPOST_S3_KEY_PREFIX": "elsewhere/"})
        assert "notification soundpost-staging: updated" in wrong.stdout, wrong.stdout + wrong.stderr
        uppy.simple_upload(alice, "take.wav", audio_samples.wav(1.0), "audio/wav")
        deadline = time.monotonic() + 30
        while missed_total(app) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert missed_total(app) == before + 1
        ready = httpx.get(f"{app}/readyz", timeout=30)
        [upload] = alice.get("/api/uploads").json()["uploads"]
    assert upload["status"] == "verified"  # promoted all the same, by the sweeper
    assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
    assert ready.json()["checks"]["events"].startswith("missed (1 upload(s)")
    [line] = [r.getMessage() for r in caplog.records if r.name == "soundpost.events"]
    assert "restart radosgw" in line and "soundpost bucket setup" in line


def test_without_events_the_sweepers_promotions_are_expected_and_not_reported() -> None:
    """The sweeper is the only promoter of unconfirmed uploads without SOUNDPOST_EVENTS_TOKEN: nothing is missed."""
    PUSHES.after_sweep(False, 3)
    assert PUSHES.check(False) is None
    PUSHES.after_sweep(True, 0)
    assert PUSHES.check(True) == "ok"
