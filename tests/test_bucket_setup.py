"""``soundpost bucket setup``: CORS and the staging lifecycle rule, applied idempotently, and acted on by radosgw.

The command runs as an operator runs it (its own process, settings from the
environment) against the session's radosgw, whose lifecycle "day" lasts 10 seconds
(``rgw lc debug interval`` in tests/infra/rgw/start), so the rule is seen to act.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from service import devstack
from service.core import keys
from service.storage.bucket import lifecycle_days
from tests.support.bucket import run_bucket_setup
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, new_bucket, object_keys, stored_object
from tests.support.settings import s3_settings

OWNER = keys.user_id("fake", "alice")
STAGING = "uploads/incoming/"
LIFECYCLE_DEADLINE = 60  # seconds; radosgw acted within about 20 in the recipe's measurements


@pytest.fixture
def rgw(request: pytest.FixtureRequest) -> devstack.S3Endpoint:
    endpoint: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
    return endpoint


@pytest.fixture
def rgw_bucket(rgw: devstack.S3Endpoint) -> str:
    """A bare bucket on radosgw: no CORS, no lifecycle rules, no notifications."""
    return new_bucket(rgw)


@pytest.fixture
def setup_env(app_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str) -> dict[str, str]:
    """The settings of a deployment that stores in ``rgw_bucket``, with events off."""
    return {**app_env, **s3_settings(rgw, rgw_bucket), "SOUNDPOST_PUBLIC_URL": "https://soundpost.example"}


def test_bucket_setup_sets_cors_and_the_staging_rule_and_says_so(
    setup_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str
) -> None:
    """A bare bucket gets the page's CORS rule and one lifecycle rule on the staging prefix; the output lists each."""
    done = run_bucket_setup(setup_env)
    assert done.returncode == 0, done.stderr
    assert "cors: set (origins https://soundpost.example)" in done.stdout
    assert "lifecycle rule soundpost-staging: added (uploads/incoming/ expires after 1 day" in done.stdout
    assert "events: off (SOUNDPOST_EVENTS_TOKEN is not set)" in done.stdout
    with admin(rgw) as client:
        [rule] = client.get_bucket_lifecycle_configuration(Bucket=rgw_bucket)["Rules"]
        [cors] = client.get_bucket_cors(Bucket=rgw_bucket)["CORSRules"]
    assert rule["Filter"] == {"Prefix": STAGING}
    assert rule["Expiration"] == {"Days": 1}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert cors["AllowedOrigins"] == ["https://soundpost.example"]
    assert sorted(cors["AllowedMethods"]) == ["GET", "HEAD", "POST", "PUT"]


@pytest.mark.parametrize(("seconds", "days"), [(60, 1), (86400, 1), (86401, 2), (7 * 86400, 7)])
def test_the_staging_lifetime_is_rounded_up_to_whole_lifecycle_days(seconds: int, days: int) -> None:
    """Lifecycle rules count days: a lifetime is rounded up, so the rule never deletes before the sweeper would."""
    assert lifecycle_days(seconds) == days


def test_bucket_setup_twice_changes_nothing_the_second_time(
    setup_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str
) -> None:
    """Idempotent: the second run reports every step unchanged, and the bucket's rules are as the first run left them."""
    assert run_bucket_setup(setup_env).returncode == 0
    with admin(rgw) as client:
        first = client.get_bucket_lifecycle_configuration(Bucket=rgw_bucket)["Rules"]
    again = run_bucket_setup(setup_env)
    assert again.returncode == 0, again.stderr
    assert "cors: unchanged" in again.stdout
    assert "lifecycle rule soundpost-staging: unchanged" in again.stdout
    with admin(rgw) as client:
        assert client.get_bucket_lifecycle_configuration(Bucket=rgw_bucket)["Rules"] == first


def test_bucket_setup_keeps_lifecycle_rules_that_are_not_its_own(
    setup_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str
) -> None:
    """An operator's own rule on another prefix survives, beside ours."""
    theirs = {
        "ID": "keep-logs-a-week",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 7},
    }
    with admin(rgw) as client:
        client.put_bucket_lifecycle_configuration(
            Bucket=rgw_bucket, LifecycleConfiguration={"Rules": [theirs]}
        )
    done = run_bucket_setup(setup_env)
    assert done.returncode == 0, done.stderr
    with admin(rgw) as client:
        rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=rgw_bucket)["Rules"]}
    assert set(rules) == {"keep-logs-a-week", "soundpost-staging"}
    assert rules["keep-logs-a-week"]["Filter"] == {"Prefix": "logs/"}


def test_lifecycle_rule_removes_stale_staging_uploads_and_leaves_the_library(
    setup_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str
) -> None:
    """On radosgw the rule deletes a never-promoted staging object and aborts an abandoned multipart upload; library objects stay."""
    assert run_bucket_setup(setup_env).returncode == 0
    upload_id = keys.new_upload_id()
    stale = keys.build_key("uploads/", OWNER, upload_id, "never-confirmed.wav")
    abandoned = keys.build_key("uploads/", OWNER, keys.new_upload_id(), "abandoned.wav")
    kept = keys.library_key("uploads/", OWNER, keys.new_upload_id(), "verified.wav")
    with admin(rgw) as client:
        client.put_object(Bucket=rgw_bucket, Key=stale, Body=b"RIFF staged", ContentType="audio/wav")
        client.put_object(Bucket=rgw_bucket, Key=kept, Body=b"RIFF verified", ContentType="audio/wav")
        multipart = client.create_multipart_upload(Bucket=rgw_bucket, Key=abandoned, ContentType="audio/wav")
        client.upload_part(
            Bucket=rgw_bucket, Key=abandoned, UploadId=multipart["UploadId"], PartNumber=1, Body=b"x" * 1024
        )
    deadline = time.monotonic() + LIFECYCLE_DEADLINE
    while True:
        with admin(rgw) as client:
            in_progress = client.list_multipart_uploads(Bucket=rgw_bucket).get("Uploads", [])
        if stale not in object_keys(rgw, rgw_bucket) and not in_progress:
            break
        assert time.monotonic() < deadline, (
            f"after {LIFECYCLE_DEADLINE}s: {object_keys(rgw, rgw_bucket)}, {in_progress}"
        )
        time.sleep(1)
    assert object_keys(rgw, rgw_bucket) == [kept]
    assert stored_object(rgw, rgw_bucket, kept) == (b"RIFF verified", "audio/wav")


def test_bucket_setup_names_the_setting_when_the_store_refuses(
    setup_env: dict[str, str], rgw_bucket: str
) -> None:
    """A bucket the store does not have: exit 1, and the message names the step, the store's code and the setting."""
    done = run_bucket_setup({**setup_env, "SOUNDPOST_S3_BUCKET": f"{rgw_bucket}-missing"})
    assert done.returncode == 1
    assert "bucket setup failed: cors: the store refused (NoSuchBucket" in done.stderr
    assert "SOUNDPOST_S3_BUCKET" in done.stderr


def test_bucket_setup_names_the_endpoint_setting_when_the_store_is_unreachable(
    setup_env: dict[str, str],
) -> None:
    """Nothing listening at the endpoint: exit 1, naming SOUNDPOST_S3_ENDPOINT."""
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    done = run_bucket_setup({**setup_env, "SOUNDPOST_S3_ENDPOINT": dead, "SOUNDPOST_S3_CONNECT_TIMEOUT": "1"})
    assert done.returncode == 1
    assert "the store cannot be reached" in done.stderr
    assert "SOUNDPOST_S3_ENDPOINT" in done.stderr


def test_bucket_setup_with_events_on_aws_refuses_before_changing_anything(setup_env: dict[str, str]) -> None:
    """On AWS (no endpoint) with an events token: exit 1 at once, saying to use the sweeper; no request is made."""
    env = {name: value for name, value in setup_env.items() if name != "SOUNDPOST_S3_ENDPOINT"}
    done = run_bucket_setup({**env, "SOUNDPOST_EVENTS_TOKEN": "t" * 40})
    assert done.returncode == 1
    assert "SOUNDPOST_EVENTS_TOKEN is set, but on AWS S3" in done.stderr
    assert "SOUNDPOST_SWEEP_INTERVAL" in done.stderr
    assert done.stdout == ""


def test_bucket_setup_with_no_events_leaves_notifications_alone(
    setup_env: dict[str, str], rgw: devstack.S3Endpoint, rgw_bucket: str
) -> None:
    """--no-events (MinIO, whose webhook target is server configuration): the token is set, yet no topic is made."""
    done = run_bucket_setup({**setup_env, "SOUNDPOST_EVENTS_TOKEN": "t" * 40}, "--no-events")
    assert done.returncode == 0, done.stderr
    assert "lifecycle rule soundpost-staging: added" in done.stdout
    assert "events: left as they are (--no-events)" in done.stdout
    assert "topic" not in done.stdout
    with admin(rgw) as client:
        assert "TopicConfigurations" not in client.get_bucket_notification_configuration(Bucket=rgw_bucket)


def test_bucket_setup_with_bad_settings_exits_2_naming_them(setup_env: dict[str, str]) -> None:
    """A short events token is a settings error: exit 2 and the setting's name, before any S3 call."""
    done = run_bucket_setup({**setup_env, "SOUNDPOST_EVENTS_TOKEN": "short"})
    assert done.returncode == 2
    assert "SOUNDPOST_EVENTS_TOKEN must be 32 to 256 URL-safe characters" in done.stderr
