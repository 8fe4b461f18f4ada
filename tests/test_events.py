"""POST /api/events/s3: the S3 event route refuses what is not a store's authenticated push, and promotes what is.

The app runs under uvicorn against moto's S3 server; events are posted by hand in the
shape radosgw and MinIO send (tests/test_notifications.py has radosgw send them for real).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Iterator
from urllib.parse import quote_plus

import httpx
import pytest

from service import devstack
from service.core import keys
from service.settings import SettingsError, load_settings
from tests.conftest import serve_app
from tests.support import audio_samples
from tests.support.s3 import admin, object_keys, stored_object
from tests.support.webhooks import SECRET, Receiver

TOKEN = secrets.token_urlsafe(32)
ALICE = keys.user_id("fake", "alice")
BOB = keys.user_id("fake", "bob")
WAV = audio_samples.wav(0.5)


def record(bucket: str, key: str, event: str = "ObjectCreated:Post") -> dict[str, object]:
    """One S3 event record as radosgw sends it (the fields this route reads, and a few it does not)."""
    return {
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "soundpost-staging",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": len(WAV), "eTag": "0" * 32},
        },
    }


def records(*items: dict[str, object]) -> bytes:
    return json.dumps({"Records": list(items)}).encode()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def push(events: httpx.Client, body: bytes, token: str, where: str) -> httpx.Response:
    """POST a push with the token where a store puts it: a bearer ``header``, or the ``query`` string."""
    if where == "header":
        return events.post("/api/events/s3", content=body, headers=bearer(token))
    return events.post(
        "/api/events/s3", params={"token": token}, content=body, headers={"Content-Type": "application/json"}
    )


@pytest.fixture
def app_env(app_env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    return {
        **app_env,
        "SOUNDPOST_EVENTS_TOKEN": TOKEN,
        "SOUNDPOST_WEBHOOK_URL": receiver.url,
        "SOUNDPOST_WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture
def events(app_url: str) -> Iterator[httpx.Client]:
    """A store's HTTP client: no cookies, no Origin, no Sec-Fetch-Site."""
    with httpx.Client(base_url=app_url, timeout=30) as client:
        yield client


@pytest.fixture
def staged(s3: devstack.S3Endpoint, bucket: str) -> str:
    """A WAV waiting in alice's staging area, as her browser left it."""
    key = keys.build_key("uploads/", ALICE, keys.new_upload_id(), "take-1.wav")
    with admin(s3) as client:
        client.put_object(Bucket=bucket, Key=key, Body=WAV, ContentType="audio/wav")
    return key


def library_of(key: str, owner: str = ALICE) -> str:
    _, upload_id, filename = keys.parse_key("uploads/", key) or ("", "", "")
    return keys.library_key("uploads/", owner, upload_id, filename)


def uploads_in(s3: devstack.S3Endpoint, bucket: str) -> list[str]:
    """The bucket's staging and library uploads (promotion's own records and the sidecars left out)."""
    areas = (keys.area_prefix("uploads/", keys.STAGING), keys.area_prefix("uploads/", keys.LIBRARY))
    return [
        key
        for key in object_keys(s3, bucket)
        if key.startswith(areas) and not key.rsplit("/", 1)[1].startswith(keys.SIDECAR_MARK)
    ]


def assert_untouched(s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver) -> None:
    """The staging upload is where it was, nothing reached the library, and nothing was announced."""
    assert object_keys(s3, bucket) == [staged]
    assert receiver.received == []


def test_an_event_without_a_token_is_refused_with_401(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """No bearer header and no ?token=: 401 events_token_missing, with a Bearer challenge, and nothing moves."""
    answer = events.post(
        "/api/events/s3",
        content=records(record(bucket, staged)),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "events_token_missing"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert_untouched(s3, bucket, staged, receiver)


@pytest.mark.parametrize("where", ["header", "query"])
def test_an_event_with_a_wrong_token_is_refused_with_403(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver, where: str
) -> None:
    """A token that is not the configured one, in either place, is 403 events_token_invalid; nothing moves."""
    wrong = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    answer = push(events, records(record(bucket, staged)), wrong, where)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "events_token_invalid"
    assert_untouched(s3, bucket, staged, receiver)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"", "malformed_json"),
        (b"{}", "malformed_event"),
        (b'{"Records": "all of them"}', "malformed_event"),
        (b'{"Records": [{"eventName": "ObjectCreated:Post"}]}', "malformed_event"),
        (
            b'{"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
            "malformed_event",
        ),
        (
            b'{"Records": [{"eventName": 7, "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}',
            "malformed_event",
        ),
    ],
)
def test_a_malformed_event_body_is_refused_with_400(
    events: httpx.Client,
    s3: devstack.S3Endpoint,
    bucket: str,
    staged: str,
    receiver: Receiver,
    body: bytes,
    code: str,
) -> None:
    """Bodies that are not JSON, or not S3 event records, are 400 with a code saying which; nothing moves."""
    answer = events.post("/api/events/s3", content=body, headers=bearer())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    assert_untouched(s3, bucket, staged, receiver)


def test_a_push_of_too_many_records_is_refused_and_promotes_none_of_them(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """Past ten records a push is 400 malformed_event as a whole: not even the first record is promoted."""
    answer = events.post("/api/events/s3", content=records(*[record(bucket, staged)] * 11), headers=bearer())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed_event"
    assert_untouched(s3, bucket, staged, receiver)


def test_an_oversized_event_body_is_refused_with_413(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """A body over 64 KiB is 413 body_too_large, before it is parsed."""
    padded = {**record(bucket, staged), "padding": "x" * 70_000}
    answer = events.post("/api/events/s3", content=records(padded), headers=bearer())
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "body_too_large"
    assert_untouched(s3, bucket, staged, receiver)


def test_the_route_answers_404_when_no_events_token_is_configured(
    app_env: dict[str, str], s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """Without SOUNDPOST_EVENTS_TOKEN the route is off: 404 events_disabled, whatever token is sent."""
    env = {name: value for name, value in app_env.items() if name != "SOUNDPOST_EVENTS_TOKEN"}
    with serve_app(env) as url:
        answer = httpx.post(f"{url}/api/events/s3", content=records(record(bucket, staged)), headers=bearer())
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "events_disabled"
    assert "SOUNDPOST_EVENTS_TOKEN" in answer.json()["error"]["detail"]
    assert_untouched(s3, bucket, staged, receiver)


@pytest.mark.parametrize("where", ["header", "query"])
def test_an_authenticated_event_promotes_and_announces_the_upload(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver, where: str
) -> None:
    """With the token as a bearer header or in the query, the named upload moves to the library, announced once."""
    answer = push(events, records(record(bucket, staged)), TOKEN, where)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"promoted": 1, "rejected": 0, "ignored": 0}
    assert uploads_in(s3, bucket) == [library_of(staged)]
    assert stored_object(s3, bucket, library_of(staged)) == (WAV, "audio/wav")
    [event] = receiver.verified()
    assert event["type"] == "upload.confirmed"


def test_an_event_names_its_key_url_encoded_and_is_decoded(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, receiver: Receiver
) -> None:
    """S3 sends keys form-encoded (``%C3%A9``, spaces as ``+``): the key is decoded before it is looked up."""
    key = keys.build_key(
        "uploads/", ALICE, keys.new_upload_id(), keys.safe_filename("café déjà vu.wav", ".wav")
    )
    with admin(s3) as client:
        client.put_object(Bucket=bucket, Key=key, Body=WAV, ContentType="audio/wav")
    answer = events.post("/api/events/s3", content=records(record(bucket, quote_plus(key))), headers=bearer())
    assert answer.status_code == 200, answer.text
    assert answer.json()["promoted"] == 1
    assert stored_object(s3, bucket, library_of(key))[0] == WAV
    assert len(receiver.verified()) == 1


def test_a_repeated_event_announces_the_upload_once(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """A store that pushes the same record again (a retry) gets 200 again, and the receiver one delivery."""
    for _ in range(3):
        answer = events.post("/api/events/s3", content=records(record(bucket, staged)), headers=bearer())
        assert answer.status_code == 200, answer.text
    assert uploads_in(s3, bucket) == [library_of(staged)]
    assert len(receiver.verified()) == 1


@pytest.mark.parametrize(
    "name",
    ["library key", "outside the prefix", "another bucket", "a removal", "a traversal"],
)
def test_events_outside_our_staging_area_are_ignored_and_counted(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver, name: str
) -> None:
    """Records for library keys, foreign keys, other buckets or other event kinds are counted as ignored, and change nothing."""
    _, upload_id, filename = keys.parse_key("uploads/", staged) or ("", "", "")
    named = {
        "library key": record(bucket, keys.library_key("uploads/", ALICE, upload_id, filename)),
        "outside the prefix": record(bucket, f"elsewhere/{ALICE}/{upload_id}/{filename}"),
        "another bucket": record(f"{bucket}-other", staged),
        "a removal": record(bucket, staged, event="ObjectRemoved:Delete"),
        "a traversal": record(bucket, f"uploads/incoming/{BOB}/../{ALICE}/{upload_id}/{filename}"),
    }[name]
    answer = events.post("/api/events/s3", content=records(named), headers=bearer())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"promoted": 0, "rejected": 0, "ignored": 1}
    assert_untouched(s3, bucket, staged, receiver)
    metrics = events.get("/metrics").text
    assert 'soundpost_s3_events_total{outcome="ignored"}' in metrics


def test_an_event_naming_another_users_key_promotes_nothing_for_them(
    events: httpx.Client, s3: devstack.S3Endpoint, bucket: str, staged: str, receiver: Receiver
) -> None:
    """alice's upload id under bob's user id finds nothing: bob's library stays empty, alice's upload stays staged."""
    _, upload_id, filename = keys.parse_key("uploads/", staged) or ("", "", "")
    forged = keys.build_key("uploads/", BOB, upload_id, filename)
    answer = events.post("/api/events/s3", content=records(record(bucket, forged)), headers=bearer())
    assert answer.status_code == 200, answer.text
    assert answer.json()["promoted"] == 0
    assert uploads_in(s3, bucket) == [staged]
    assert receiver.received == []


def test_a_store_failure_during_promotion_answers_503_so_the_store_pushes_again(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """With S3 unreachable the push is 503 storage_unavailable with Retry-After, and an ERROR line names the setting."""
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {**app_env, "SOUNDPOST_S3_ENDPOINT": dead}
    key = keys.build_key("uploads/", ALICE, keys.new_upload_id(), "take-1.wav")
    with serve_app(env) as url:
        answer = httpx.post(
            f"{url}/api/events/s3",
            content=records(record(app_env["SOUNDPOST_S3_BUCKET"], key)),
            headers=bearer(),
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "storage_unavailable"
    assert answer.headers["retry-after"]
    assert any(r.levelname == "ERROR" and "SOUNDPOST_S3_ENDPOINT" in r.getMessage() for r in caplog.records)


def settings_with(app_env: dict[str, str], **events: str) -> dict[str, str]:
    """The app's settings with the events ones replaced (named without the SOUNDPOST_ prefix)."""
    env = {name: value for name, value in app_env.items() if not name.startswith("SOUNDPOST_EVENTS_")}
    return {
        **env,
        "SOUNDPOST_PUBLIC_URL": "https://soundpost.example/app",
        **{f"SOUNDPOST_{name}": value for name, value in events.items()},
    }


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        ({"EVENTS_TOKEN": "too-short"}, "SOUNDPOST_EVENTS_TOKEN must be 32 to 256 URL-safe characters"),
        ({"EVENTS_TOKEN": "a" * 31 + "&"}, "SOUNDPOST_EVENTS_TOKEN must be 32 to 256 URL-safe characters"),
        (
            {"EVENTS_URL": "https://app.internal/api/events/s3"},
            "SOUNDPOST_EVENTS_URL needs SOUNDPOST_EVENTS_TOKEN",
        ),
        ({"EVENTS_TOKEN": TOKEN, "EVENTS_URL": "ftp://x"}, "SOUNDPOST_EVENTS_URL must be an http(s) URL"),
    ],
)
def test_a_bad_events_setting_stops_start_up_naming_it(
    app_env: dict[str, str], events: dict[str, str], problem: str
) -> None:
    """A token too short or not URL-safe, or a push URL without a token, is refused at start-up by name."""
    with pytest.raises(SettingsError) as refused:
        load_settings(settings_with(app_env, **events))
    assert problem in str(refused.value)


def test_the_push_url_is_the_public_events_route_with_the_token_unless_set(app_env: dict[str, str]) -> None:
    """By default the store pushes to the public URL's events route; SOUNDPOST_EVENTS_URL points it elsewhere."""
    settings = load_settings(settings_with(app_env, EVENTS_TOKEN=TOKEN))
    assert settings.events_push_url == f"https://soundpost.example/app/api/events/s3?token={TOKEN}"
    inside = load_settings(
        settings_with(app_env, EVENTS_TOKEN=TOKEN, EVENTS_URL="http://app:8000/api/events/s3")
    )
    assert inside.events_push_url == f"http://app:8000/api/events/s3?token={TOKEN}"
    assert load_settings(settings_with(app_env)).events_push_url is None


def test_the_events_token_never_shows_in_the_settings_repr(app_env: dict[str, str]) -> None:
    """The token is a secret: wrapped, so a logged or printed Settings does not carry it."""
    assert TOKEN not in repr(load_settings(settings_with(app_env, EVENTS_TOKEN=TOKEN)))


def test_the_events_route_is_described_in_the_openapi_document(events: httpx.Client) -> None:
    """/openapi.json lists the route with each refusal's code, and no session requirement."""
    operation = events.get("/openapi.json").json()["paths"]["/api/events/s3"]["post"]
    assert "security" not in operation
    codes = {status: response["description"] for status, response in operation["responses"].items()}
    for status, code in [
        ("400", "malformed_event"),
        ("401", "events_token_missing"),
        ("403", "events_token_invalid"),
    ]:
        assert code in codes[status]
