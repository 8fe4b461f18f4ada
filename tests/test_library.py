"""/api/uploads: confirm (sniff the bytes), list, play back and delete the caller's uploads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from service import devstack
from service.core import keys
from service.lifecycle.library import content_disposition, decode_cursor, encode_cursor
from tests.conftest import signed_in
from tests.support import audio_samples, uppy
from tests.support.encoded import encoded
from tests.support.s3 import SOME_UPLOAD_ID


def upload(client: httpx.Client, filename: str, data: bytes, content_type: str) -> str:
    """Store a file the way the page does; returns its upload id."""
    parsed = keys.parse_key("uploads/", uppy.simple_upload(client, filename, data, content_type))
    assert parsed is not None
    return parsed[1]


def confirm(client: httpx.Client, upload_id: str) -> httpx.Response:
    return client.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(client))


def exists(s3: devstack.S3Endpoint, bucket: str, upload_id: str) -> bool:
    listed = devstack.s3_admin(s3).list_objects_v2(Bucket=bucket, Prefix="uploads/")
    return any(f"/{upload_id}/" in item["Key"] for item in listed.get("Contents", []))


def test_confirm_answers_the_upload_with_its_duration(alice: httpx.Client) -> None:
    """A real WAV is confirmed: id, key, filename, size, type, time and duration in camelCase."""
    data = audio_samples.wav(2.0)
    upload_id = upload(alice, "Standup.wav", data, "audio/wav")
    answer = confirm(alice, upload_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {
        "id",
        "key",
        "filename",
        "size",
        "contentType",
        "uploadedAt",
        "durationSeconds",
        "status",
        "audio",
        "peaksUrl",
        "renditionUrl",
    }
    assert body["status"] == "verified"
    assert (body["id"], body["filename"], body["size"], body["contentType"], body["durationSeconds"]) == (
        upload_id,
        "Standup.wav",
        len(data),
        "audio/wav",
        2.0,
    )
    assert body["key"] == keys.library_key(
        "uploads/", keys.user_id("fake", "alice"), upload_id, "Standup.wav"
    )
    assert body["audio"] == {"codec": "pcm_s16le", "sampleRate": 8000, "channels": 1, "bitRate": 128000}
    assert (body["peaksUrl"], body["renditionUrl"]) == (f"/api/uploads/{upload_id}/peaks", None)
    uploaded = datetime.fromisoformat(body["uploadedAt"])
    assert uploaded.tzinfo is not None and abs((datetime.now(UTC) - uploaded).total_seconds()) < 3600


def test_confirming_twice_gives_the_same_answer(alice: httpx.Client) -> None:
    """Confirm is safe to retry."""
    upload_id = upload(alice, "twice.flac", encoded("flac"), "audio/flac")
    first, second = confirm(alice, upload_id), confirm(alice, upload_id)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["durationSeconds"] == 4.0


def test_confirm_deletes_a_non_audio_file(alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str) -> None:
    """A PDF uploaded as audio/wav is caught by its first bytes, removed, and reported as not_audio, again on retry."""
    upload_id = upload(alice, "slides.wav", audio_samples.not_audio(), "audio/wav")
    assert exists(s3, bucket, upload_id)
    answer = confirm(alice, upload_id)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "not_audio"
    assert not exists(s3, bucket, upload_id)
    again = confirm(alice, upload_id)
    assert again.status_code == 422 and again.json()["error"]["code"] == "not_audio"
    assert alice.get(f"/api/uploads/{upload_id}/url").status_code == 404


def test_confirm_deletes_audio_of_another_format_than_declared(
    alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """FLAC bytes stored as audio/wav do not match their type."""
    upload_id = upload(alice, "mislabelled.wav", encoded("flac"), "audio/wav")
    assert confirm(alice, upload_id).json()["error"]["code"] == "container_mismatch"
    assert not exists(s3, bucket, upload_id)


def test_confirm_deletes_an_object_over_the_size_limit(
    alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """An object that got past the policy (written straight to the bucket) is still refused at confirm."""
    owner = keys.user_id("fake", "alice")
    key = keys.build_key("uploads/", owner, keys.new_upload_id(), "big.wav")
    devstack.s3_admin(s3).put_object(
        Bucket=bucket, Key=key, ContentType="audio/wav", Body=audio_samples.wav_of(bytes(10 * 1024 * 1024))
    )
    answer = confirm(alice, key.split("/")[3])
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "file_too_large"
    with pytest.raises(ClientError):
        devstack.s3_admin(s3).head_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html", b"<script>"), ("application/octet-stream", audio_samples.wav(0.5))],
    ids=["html", "audio-stored-untyped"],
)
def test_confirm_deletes_an_object_of_a_type_that_is_not_allowed(
    alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str, content_type: str, body: bytes
) -> None:
    """A stored Content-Type outside the allowlist is refused and removed, whatever the bytes decode as.

    Confirm does not HEAD a single-part object: the decoding worker's read learns the type."""
    key = keys.build_key("uploads/", keys.user_id("fake", "alice"), keys.new_upload_id(), "page.wav")
    devstack.s3_admin(s3).put_object(Bucket=bucket, Key=key, ContentType=content_type, Body=body)
    answer = confirm(alice, key.split("/")[3])
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "unsupported_type"
    assert not exists(s3, bucket, key.split("/")[3])


def test_list_is_newest_first_and_pages_with_an_opaque_cursor(alice: httpx.Client) -> None:
    """Three verified uploads, two per page: the newest two, then the oldest, then no cursor."""
    ids = [upload(alice, f"take-{n}.wav", audio_samples.wav(0.1), "audio/wav") for n in range(3)]
    assert [confirm(alice, i).status_code for i in ids] == [200] * 3
    first = alice.get("/api/uploads", params={"limit": 2}).json()
    assert [u["id"] for u in first["uploads"]] == [ids[2], ids[1]]
    assert first["nextCursor"] and ids[1] not in first["nextCursor"]
    second = alice.get("/api/uploads", params={"limit": 2, "cursor": first["nextCursor"]}).json()
    assert [u["id"] for u in second["uploads"]] == [ids[0]]
    assert second["nextCursor"] is None
    entry = second["uploads"][0]
    assert (entry["filename"], entry["contentType"], entry["size"], entry["status"]) == (
        "take-0.wav",
        "audio/wav",
        len(audio_samples.wav(0.1)),
        "verified",
    )


def test_list_shows_only_the_callers_uploads(alice: httpx.Client, bob: httpx.Client) -> None:
    """Bob's listing never includes alice's files."""
    upload(alice, "hers.wav", audio_samples.wav(0.1), "audio/wav")
    mine = upload(bob, "his.wav", audio_samples.wav(0.1), "audio/wav")
    assert [u["id"] for u in bob.get("/api/uploads").json()["uploads"]] == [mine]


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "bm90LWFuLWlk",
        encode_cursor("../x/y"),
        encode_cursor(f"{SOME_UPLOAD_ID}/a\x01b.wav"),
        encode_cursor(f"{SOME_UPLOAD_ID}/tab\there.wav"),
        encode_cursor(f"{SOME_UPLOAD_ID}/del\x7f.wav"),
    ],
)
def test_a_forged_cursor_is_400(alice: httpx.Client, cursor: str) -> None:
    """Only cursors this service handed out are accepted."""
    answer = alice.get("/api/uploads", params={"cursor": cursor})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_page_size_runs_from_1_to_100(alice: httpx.Client, limit: str) -> None:
    """An out-of-range limit is a validation error naming the parameter."""
    answer = alice.get("/api/uploads", params={"limit": limit})
    assert answer.status_code == 422
    assert answer.json()["error"]["path"] == "limit"


def test_cursor_round_trips() -> None:
    """A cursor is the position it encodes, nothing more."""
    after = f"{keys.new_upload_id()}/a.wav"
    assert decode_cursor(encode_cursor(after)) == after


def test_play_url_downloads_the_bytes_with_the_stored_type(
    alice: httpx.Client, s3: devstack.S3Endpoint
) -> None:
    """The presigned GET is on the browser endpoint and serves the file as audio, inline, under its name."""
    data = audio_samples.wav(0.5)
    upload_id = upload(alice, "Ünïcode talk.wav", data, "audio/wav")
    assert confirm(alice, upload_id).status_code == 200
    answer = alice.get(f"/api/uploads/{upload_id}/url")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"url", "expiresAt"} and body["url"].startswith(s3.url)
    assert int(parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"][0]) <= 600
    got = httpx.get(body["url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "audio/wav"
    assert got.headers["content-disposition"] == content_disposition("Ünïcode-talk.wav")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("talk.wav", "inline; filename=\"talk.wav\"; filename*=UTF-8''talk.wav"),
        ("Ünï.wav", "inline; filename=\"_n_.wav\"; filename*=UTF-8''%C3%9Cn%C3%AF.wav"),
        ('a";b\\.wav', "inline; filename=\"a__b_.wav\"; filename*=UTF-8''a%22%3Bb%5C.wav"),
    ],
)
def test_content_disposition_cannot_be_broken_out_of(name: str, expected: str) -> None:
    """Quotes, semicolons and backslashes never reach the quoted fallback; the exact name is percent-encoded."""
    assert content_disposition(name) == expected


def test_delete_removes_the_object(alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str) -> None:
    """DELETE answers 204, the library object is gone, and a second DELETE is 404."""
    upload_id = upload(alice, "gone.wav", audio_samples.wav(0.1), "audio/wav")
    assert confirm(alice, upload_id).status_code == 200
    assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 204
    assert not exists(s3, bucket, upload_id)
    assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 404


@pytest.mark.parametrize("upload_id", ["nope", "../../x", "0" * 25])
def test_unknown_or_malformed_ids_are_404(alice: httpx.Client, upload_id: str) -> None:
    """Ids that are not the caller's uploads are simply not found."""
    answer = alice.get(f"/api/uploads/{upload_id}/url")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_library_needs_a_signed_in_user(client: httpx.Client) -> None:
    """Signed out, every library route is 401."""
    some = keys.new_upload_id()
    answers = [
        client.get("/api/uploads"),
        client.get(f"/api/uploads/{some}/url"),
        client.post(f"/api/uploads/{some}/confirm"),
        client.delete(f"/api/uploads/{some}"),
    ]
    assert [a.status_code for a in answers] == [401] * 4


def test_without_a_pending_cap_waiting_uploads_are_still_listed(app_env: dict[str, str]) -> None:
    """SOUNDPOST_MAX_PENDING_UPLOADS=0 lifts the cap; the listing still shows what waits to be verified."""
    with signed_in({**app_env, "SOUNDPOST_MAX_PENDING_UPLOADS": "0"}) as alice:
        waiting = upload(alice, "waiting.wav", audio_samples.wav(0.1), "audio/wav")
        listed = alice.get("/api/uploads").json()["uploads"]
    assert [(u["id"], u["status"]) for u in listed] == [(waiting, "pending")]


def test_a_listing_page_costs_one_s3_list_whatever_its_length(
    alice: httpx.Client, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No HEAD per item: the first page lists library and staging (2 calls), later pages the library (1)."""
    ids = [upload(alice, f"n{n}.wav", audio_samples.wav(0.1), "audio/wav") for n in range(5)]
    assert [confirm(alice, i).status_code for i in ids] == [200] * 5
    upload(alice, "waiting.wav", audio_samples.wav(0.1), "audio/wav")

    def s3_calls_for(params: dict[str, str | int]) -> tuple[httpx.Response, int]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            answer = alice.get("/api/uploads", params=params)
        return answer, sum(f"/{bucket}" in r.getMessage() for r in caplog.records if r.name == "werkzeug")

    first, first_calls = s3_calls_for({"limit": 4})
    assert [u["status"] for u in first.json()["uploads"]] == ["pending"] + ["verified"] * 4
    # The decoded facts come with the same calls (they are in the sidecars' names).
    assert [u["durationSeconds"] for u in first.json()["uploads"]] == [None] + [0.1] * 4
    assert all(u["audio"]["codec"] == "pcm_s16le" for u in first.json()["uploads"][1:])
    assert first_calls == 2
    second, second_calls = s3_calls_for({"limit": 4, "cursor": first.json()["nextCursor"]})
    assert [u["id"] for u in second.json()["uploads"]] == [ids[0]]
    assert second_calls == 1
