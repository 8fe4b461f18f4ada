"""POST /api/upload/presigned-url: who may ask, what they may ask for, and what they get."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest

from service.core import keys
from service.devstack import S3Endpoint
from tests.support.s3 import admin

PRESIGN = "/api/upload/presigned-url"


def ask(client: httpx.Client, body: object, **kwargs: object) -> httpx.Response:
    return client.post(PRESIGN, json=body, **kwargs)  # type: ignore[arg-type]


def error_of(answer: httpx.Response) -> dict[str, str]:
    return answer.json()["error"]


def policy_of(answer: httpx.Response) -> dict[str, object]:
    return json.loads(base64.b64decode(answer.json()["fields"]["policy"]))


def test_signed_out_is_401(client: httpx.Client) -> None:
    answer = ask(client, {"filename": "a.wav", "contentType": "audio/wav"})
    assert answer.status_code == 401
    assert error_of(answer)["code"] == "not_signed_in"


def test_returns_url_fields_key_expiry_and_limit(alice: httpx.Client, s3: S3Endpoint, bucket: str) -> None:
    answer = ask(alice, {"filename": "Interview 1.WAV", "contentType": "audio/x-wav", "size": 1000})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"method", "url", "fields", "key", "expiresAt", "maxBytes"}
    assert body["method"] == "POST"
    assert body["url"] == f"{s3.url}/{bucket}"
    owner = keys.user_id("fake", "alice")
    assert body["key"].startswith(f"uploads/incoming/{owner}/") and body["key"].endswith("/Interview-1.wav")
    assert keys.parse_key("uploads/", body["key"]) is not None
    assert body["fields"]["key"] == body["key"]
    assert body["fields"]["Content-Type"] == "audio/wav"
    assert body["fields"]["success_action_status"] == "201"
    assert body["maxBytes"] == 1000
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 600


def test_every_request_gets_a_new_key(alice: httpx.Client) -> None:
    body = {"filename": "same.wav", "contentType": "audio/wav"}
    assert ask(alice, body).json()["key"] != ask(alice, body).json()["key"]


def test_users_get_keys_under_their_own_prefix_only(alice: httpx.Client, bob: httpx.Client) -> None:
    body = {"filename": "../" + keys.user_id("fake", "alice") + "/x.wav", "contentType": "audio/wav"}
    key = ask(bob, body).json()["key"]
    assert key.startswith(keys.user_prefix("uploads/", keys.user_id("fake", "bob")))
    assert key.count("/") == 4


def test_without_size_the_limit_is_the_configured_maximum(alice: httpx.Client) -> None:
    answer = ask(alice, {"filename": "a.mp3", "contentType": "audio/mpeg"})
    assert answer.json()["maxBytes"] == 10 * 1024 * 1024
    assert ["content-length-range", 1, 10 * 1024 * 1024] in policy_of(answer)["conditions"]  # type: ignore[operator]


def test_the_returned_fields_upload_the_file_to_s3(alice: httpx.Client, s3: S3Endpoint, bucket: str) -> None:
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)
    body = ask(alice, {"filename": "take.wav", "contentType": "audio/wav", "size": len(audio)}).json()
    stored = httpx.post(body["url"], data=body["fields"], files={"file": ("take.wav", audio, "audio/wav")})
    assert stored.status_code == 201
    with admin(s3) as s3_client:
        obj = s3_client.get_object(Bucket=bucket, Key=body["key"])
        assert obj["Body"].read() == audio
    assert obj["ContentType"] == "audio/wav"


def test_json_with_charset_is_accepted(alice: httpx.Client) -> None:
    answer = alice.post(
        PRESIGN,
        content=b'{"filename":"a.wav","contentType":"audio/wav"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert answer.status_code == 200


def test_oversized_body_is_413(alice: httpx.Client) -> None:
    answer = ask(alice, {"filename": "a" * 10_000 + ".wav", "contentType": "audio/wav"})
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "body_too_large"


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b'{"filename": "a.wav",}'])
def test_malformed_json_is_400(alice: httpx.Client, raw: bytes) -> None:
    answer = alice.post(PRESIGN, content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert error_of(answer)["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"contentType": "audio/wav"}, "$.filename"),
        ({"filename": "a.wav"}, "$.contentType"),
        ({"filename": "", "contentType": "audio/wav"}, "$.filename"),
        ({"filename": 5, "contentType": "audio/wav"}, "$.filename"),
        ({"filename": "a.wav", "contentType": "audio/wav", "size": 0}, "$.size"),
        ({"filename": "a.wav", "contentType": "audio/wav", "size": "big"}, "$.size"),
        ({"filename": "a.wav", "contentType": "audio/wav", "bucket": "other"}, "$.bucket"),
        ([], "$"),
    ],
)
def test_rule_breaking_bodies_are_422_with_the_field_path(
    alice: httpx.Client, body: object, path: str
) -> None:
    answer = ask(alice, body)
    assert answer.status_code == 422
    error = error_of(answer)
    assert error["code"] == "validation_error"
    assert error["path"] == path
    assert error["detail"]


def test_unknown_field_is_named_in_the_error(alice: httpx.Client) -> None:
    answer = ask(alice, {"filename": "a.wav", "contentType": "audio/wav", "key": "x"})
    assert "`key`" in error_of(answer)["detail"]


@pytest.mark.parametrize("content_type", ["image/png", "text/plain", "video/mp4", "audio/x-unknown", "audio"])
def test_non_audio_types_are_422(alice: httpx.Client, content_type: str) -> None:
    answer = ask(alice, {"filename": "a.wav", "contentType": content_type})
    assert answer.status_code == 422
    assert error_of(answer) | {"detail": ""} == {
        "code": "unsupported_type",
        "path": "$.contentType",
        "detail": "",
    }


@pytest.mark.parametrize(
    ("given", "canonical", "filename"),
    [
        ("audio/x-wav", "audio/wav", "a.wav"),
        ("audio/x-m4a", "audio/mp4", "a.m4a"),
        ("audio/webm;codecs=opus", "audio/webm", "a.webm"),
        ("audio/mp3", "audio/mpeg", "a.mp3"),
        ("AUDIO/FLAC", "audio/flac", "a.flac"),
    ],
)
def test_aliases_are_pinned_as_the_canonical_type(
    alice: httpx.Client, given: str, canonical: str, filename: str
) -> None:
    answer = ask(alice, {"filename": filename, "contentType": given})
    assert answer.status_code == 200
    assert answer.json()["fields"]["Content-Type"] == canonical
    assert {"Content-Type": canonical} in policy_of(answer)["conditions"]  # type: ignore[operator]


@pytest.mark.parametrize("filename", ["notes.txt", "song.mp3", "script.exe", "page.html"])
def test_an_extension_that_contradicts_the_type_is_422(alice: httpx.Client, filename: str) -> None:
    answer = ask(alice, {"filename": filename, "contentType": "audio/wav"})
    assert answer.status_code == 422
    assert error_of(answer)["code"] == "extension_mismatch"
    assert error_of(answer)["path"] == "$.filename"


def test_a_filename_without_extension_gets_the_types_extension(alice: httpx.Client) -> None:
    key = ask(alice, {"filename": "Recording", "contentType": "audio/webm"}).json()["key"]
    assert key.endswith("/Recording.webm")


def test_declared_size_over_the_maximum_is_413(alice: httpx.Client) -> None:
    answer = ask(alice, {"filename": "a.wav", "contentType": "audio/wav", "size": 10 * 1024 * 1024 + 1})
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "file_too_large"
    assert error_of(answer)["path"] == "$.size"


def test_same_origin_post_is_accepted(alice: httpx.Client, app_url: str) -> None:
    answer = ask(
        alice,
        {"filename": "a.wav", "contentType": "audio/wav"},
        headers={"Origin": app_url, "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 200


def test_get_is_405_in_the_error_shape(alice: httpx.Client) -> None:
    answer = alice.get(PRESIGN)
    assert answer.status_code == 405
    assert error_of(answer)["code"] == "method_not_allowed"


def test_unknown_path_is_404_in_the_error_shape(client: httpx.Client) -> None:
    answer = client.get("/api/nothing-here")
    assert answer.status_code == 404
    assert error_of(answer)["code"] == "not_found"
