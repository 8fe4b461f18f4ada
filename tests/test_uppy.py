"""/s3/*: the @uppy/aws-s3 protocol, driven over HTTP as Uppy sends it, against real S3 servers."""

from __future__ import annotations

import base64
import json
import os
import secrets

import httpx
import pytest

from service import devstack
from service.core import keys
from tests.support import audio_samples, uppy
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import upload_id_of
from tests.support.settings import s3_settings
from tests.support.uppy import Multipart

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture(scope="session")
def recording() -> bytes:
    """An 11 MiB WAV of noise, made once: two 5 MiB parts and a 1 MiB tail."""
    return audio_samples.wav_of(os.urandom(11 * MiB - 44))


@pytest.fixture
def target(
    request: pytest.FixtureRequest, s3: devstack.S3Endpoint, bucket: str
) -> tuple[devstack.S3Endpoint, str]:
    """The S3 server the protocol runs against (moto unless a test asks for more), and a fresh bucket on it."""
    if getattr(request, "param", "moto") == "moto":
        return s3, bucket
    endpoint: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
    name = f"uppy-{secrets.token_hex(6)}"
    devstack.create_bucket(endpoint, name, ["http://127.0.0.1"])
    return endpoint, name


# The whole protocol runs on every S3 server the suite has; the finer points on moto alone.
EVERY_S3 = pytest.mark.parametrize("target", ["moto", "rgw"], indirect=True)


@pytest.fixture
def max_upload_mib() -> int:
    return 16


@pytest.fixture
def app_env(
    app_env: dict[str, str], target: tuple[devstack.S3Endpoint, str], max_upload_mib: int
) -> dict[str, str]:
    endpoint, bucket = target
    return {
        **app_env,
        **s3_settings(endpoint, bucket),
        "SOUNDPOST_MAX_UPLOAD_BYTES": str(max_upload_mib * MiB),
    }


@pytest.fixture
def admin(target: tuple[devstack.S3Endpoint, str]):  # type: ignore[no-untyped-def]
    return devstack.s3_admin(target[0])


def stored_keys(admin, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [item["Key"] for item in admin.list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(admin, bucket: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(u["Key"], u["UploadId"]) for u in admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def play_and_compare(client: httpx.Client, upload_id: str, data: bytes, content_type: str) -> None:
    link = client.get(f"/api/uploads/{upload_id}/url")
    assert link.status_code == 200, link.text
    got = httpx.get(link.json()["url"])
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == content_type


@EVERY_S3
def test_simple_upload_then_list_play_confirm_delete(
    alice: httpx.Client,
    admin,
    target: tuple[devstack.S3Endpoint, str],  # type: ignore[no-untyped-def]
) -> None:
    """A small file goes up as one signed POST: listed pending, confirmed, then verified, played and deleted."""
    data = audio_samples.wav(1.5)
    key = uppy.simple_upload(alice, "Lecture 1.wav", data, "audio/x-wav")
    assert key.startswith(keys.user_prefix("uploads/", keys.user_id("fake", "alice")))
    upload_id = upload_id_of(key)
    listed = alice.get("/api/uploads").json()["uploads"]
    assert [(u["id"], u["filename"], u["size"], u["contentType"], u["status"]) for u in listed] == [
        (upload_id, "Lecture-1.wav", len(data), "audio/wav", "pending")
    ]
    assert alice.get(f"/api/uploads/{upload_id}/url").status_code == 409
    confirmed = alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["durationSeconds"] == 1.5
    listed = alice.get("/api/uploads").json()["uploads"]
    assert [(u["id"], u["filename"], u["size"], u["contentType"], u["status"]) for u in listed] == [
        (upload_id, "Lecture-1.wav", len(data), "audio/wav", "verified")
    ]
    play_and_compare(alice, upload_id, data, "audio/wav")
    assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 204
    # Only the id's record stays, so the reusable POST policy cannot bring the upload back.
    assert stored_keys(admin, target[1]) == [keys.decided_key("uploads/", upload_id)]


@EVERY_S3
def test_multipart_upload_then_list_play_confirm_delete(
    alice: httpx.Client,
    admin,
    target: tuple[devstack.S3Endpoint, str],
    recording: bytes,  # type: ignore[no-untyped-def]
) -> None:
    """Three parts (5 MiB, 5 MiB, 1 MiB) assemble into the original bytes, which then play, confirm and delete."""
    completed = uppy.multipart_upload(alice, "meeting.wav", recording, "audio/wav", PART)
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert set(body) == {"location", "key", "bucket"} and body["bucket"] == target[1]
    assert admin.head_object(Bucket=target[1], Key=body["key"])["ContentLength"] == len(recording)
    upload_id = upload_id_of(body["key"])
    assert [(u["id"], u["status"]) for u in alice.get("/api/uploads").json()["uploads"]] == [
        (upload_id, "pending")
    ]
    confirmed = alice.post(f"/api/uploads/{upload_id}/confirm", headers=uppy.same_origin(alice))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["size"] == len(recording)
    assert confirmed.json()["durationSeconds"] == pytest.approx((len(recording) - 44) / 16000, abs=0.01)
    assert [(u["id"], u["status"]) for u in alice.get("/api/uploads").json()["uploads"]] == [
        (upload_id, "verified")
    ]
    play_and_compare(alice, upload_id, recording, "audio/wav")
    assert alice.delete(f"/api/uploads/{upload_id}", headers=uppy.same_origin(alice)).status_code == 204
    assert stored_keys(admin, target[1]) == [keys.decided_key("uploads/", upload_id)]
    assert open_uploads(admin, target[1]) == []


def test_listing_parts_shows_what_was_uploaded_so_uppy_can_resume(
    alice: httpx.Client, recording: bytes
) -> None:
    """After two parts, ListParts answers their numbers, ETags and sizes in Uppy's shape."""
    upload = Multipart.create(alice, "resume.wav", "audio/wav")
    first = upload.put_part(1, recording[:PART])
    second = upload.put_part(2, recording[PART : PART + 100])
    answer = upload.list_parts()
    assert answer.status_code == 200
    assert [{**p, "ETag": p["ETag"].strip('"')} for p in answer.json()] == [
        {"PartNumber": 1, "ETag": first["ETag"], "Size": PART},
        {"PartNumber": 2, "ETag": second["ETag"], "Size": 100},
    ]
    assert upload.abort().json() == {}


def test_batch_signing_gives_a_working_url_per_part(alice: httpx.Client, recording: bytes) -> None:
    """Older Uppy clients sign several parts at once; each URL accepts its part."""
    upload = Multipart.create(alice, "batch.wav", "audio/wav")
    answer = upload.sign_batch([2, 1])
    assert answer.status_code == 200
    urls = answer.json()["presignedUrls"]
    assert sorted(urls) == ["1", "2"]
    etags = [
        httpx.put(urls[str(n)], content=chunk).headers["ETag"]
        for n, chunk in ((1, recording[:PART]), (2, recording[PART : PART + 10]))
    ]
    done = upload.complete([{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}])
    assert done.status_code == 200, done.text


@pytest.mark.parametrize("numbers", [[], [0], list(range(1, 102))])
def test_a_batch_must_name_1_to_100_valid_part_numbers(alice: httpx.Client, numbers: list[int]) -> None:
    """An empty, out-of-range or oversized batch is a validation error."""
    answer = Multipart.create(alice, "b.wav", "audio/wav").sign_batch(numbers)
    assert answer.status_code == 422
    assert answer.json()["error"]["path"] == "partNumbers"


def test_abort_drops_the_upload_and_its_parts(alice: httpx.Client, admin, target, recording: bytes) -> None:  # type: ignore[no-untyped-def]
    """DELETE answers {} and the upload is gone from the bucket."""
    upload = Multipart.create(alice, "drop.wav", "audio/wav")
    upload.put_part(1, recording[:1000])
    answer = upload.abort()
    assert (answer.status_code, answer.json()) == (200, {})
    assert open_uploads(admin, target[1]) == []


def test_params_follow_the_presign_rules(alice: httpx.Client) -> None:
    """/s3/params pins the canonical type, the size limit and a key under the caller's prefix."""
    answer = uppy.params(alice, "take.m4a", "audio/x-m4a", 1234)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"method", "url", "fields", "expires"}
    assert body["method"] == "POST" and body["expires"] == 600
    assert body["fields"]["Content-Type"] == "audio/mp4"
    assert body["fields"]["key"].startswith(keys.user_prefix("uploads/", keys.user_id("fake", "alice")))


@pytest.mark.parametrize(
    ("filename", "content_type", "size", "status", "code"),
    [
        ("a.pdf", "application/pdf", None, 422, "unsupported_type"),
        ("a.txt", "audio/wav", None, 422, "extension_mismatch"),
        ("a.wav", "audio/wav", 16 * MiB + 1, 413, "file_too_large"),
    ],
)
def test_params_refuse_what_presign_refuses(
    alice: httpx.Client, filename: str, content_type: str, size: int | None, status: int, code: str
) -> None:
    """Non-audio types, contradicting extensions and oversized files get no signature."""
    answer = uppy.params(alice, filename, content_type, size)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"type": "audio/wav"}, "filename"),
        ({"filename": "", "type": "audio/wav"}, "filename"),
        ({"filename": "a.wav"}, "type"),
        ({"filename": "a.wav", "type": "audio/wav", "metadata[size]": "0"}, "metadata[size]"),
        ({"filename": "a.wav", "type": "audio/wav", "metadata[size]": "many"}, "metadata[size]"),
        ({"filename": "a" * 1025 + ".wav", "type": "audio/wav"}, "filename"),
    ],
)
def test_params_query_is_checked_by_its_struct(alice: httpx.Client, query: dict[str, str], path: str) -> None:
    """The query string is validated by ParamsQuery, the Struct /openapi.json documents: 422 naming the parameter."""
    answer = alice.get("/s3/params", params=query)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["path"] == path


def test_params_take_an_empty_size_as_unknown_and_ignore_other_metadata(alice: httpx.Client) -> None:
    """Uppy sends metadata[size]= when the size is unknown, and any metadata the page set."""
    answer = alice.get(
        "/s3/params",
        params={
            "filename": "a.wav",
            "type": "audio/wav",
            "metadata[size]": "",
            "metadata[name]": "a.wav",
            "metadata[relativePath]": "null",
        },
    )
    assert answer.status_code == 200
    policy = json.loads(base64.b64decode(answer.json()["fields"]["policy"]))
    assert ["content-length-range", 1, 16 * MiB] in policy["conditions"]


def test_signing_a_part_without_the_key_is_422_naming_it(alice: httpx.Client) -> None:
    """KeyQuery marks key as required; leaving it out is a validation error, not a guess."""
    upload = Multipart.create(alice, "k.wav", "audio/wav")
    answer = alice.get(uppy.upload_path(upload.upload_id, "/1"))
    assert answer.status_code == 422
    assert answer.json()["error"]["path"] == "key"


def test_params_pin_the_declared_size_in_the_policy(alice: httpx.Client) -> None:
    """The signed policy allows exactly up to the declared size, like POST /api/upload/presigned-url."""
    fields = uppy.params(alice, "a.wav", "audio/wav", 100).json()["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 1, 100] in policy["conditions"]
    assert {"Content-Type": "audio/wav"} in policy["conditions"]


def test_multipart_refuses_non_audio_types(alice: httpx.Client) -> None:
    """Starting a multipart upload follows the same type rules."""
    answer = uppy.create(alice, "a.exe", "application/x-msdownload", {})
    assert answer.status_code == 422
    assert answer.json()["error"] | {"detail": ""} == {
        "code": "unsupported_type",
        "path": "$.type",
        "detail": "",
    }


def test_starting_a_multipart_upload_tells_the_part_size_and_the_largest_upload(alice: httpx.Client) -> None:
    """The page learns from the create answer how large its parts are and where a recording must stop."""
    answer = uppy.create(alice, "talk.webm", "audio/webm", {})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["partSize"], body["maxBytes"]) == (5 * MiB, 16 * MiB)
    declared = uppy.create(alice, "short.webm", "audio/webm", {"size": "1000"}).json()
    assert declared["maxBytes"] == 1000


@pytest.mark.parametrize("max_upload_mib", [10])
def test_an_oversized_multipart_upload_is_refused_and_aborted(
    alice: httpx.Client,
    admin,
    target,
    recording: bytes,  # type: ignore[no-untyped-def]
) -> None:
    """S3 cannot cap a multipart upload, so completion adds up the parts: 11 MiB over a 10 MiB limit is discarded.

    The client does not declare the size, as a hostile one would not, and sends two parts of
    6 and 5 MiB: two is all a 10 MiB upload may sign, but S3 takes parts of up to 5 GiB.
    """
    answer = uppy.multipart_upload(alice, "huge.wav", recording, "audio/wav", 6 * MiB, declare_size=False)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "file_too_large"
    assert stored_keys(admin, target[1]) == []
    assert open_uploads(admin, target[1]) == []


@pytest.mark.parametrize("max_upload_mib", [10])
def test_a_declared_size_over_the_limit_starts_no_multipart_upload(
    alice: httpx.Client, admin, target
) -> None:  # type: ignore[no-untyped-def]
    """Uppy sends the file's size in the metadata; an oversized one is refused up front."""
    answer = uppy.create(alice, "big.wav", "audio/wav", {"size": 10 * MiB + 1})
    assert answer.status_code == 413
    assert answer.json()["error"] | {"detail": ""} == {
        "code": "file_too_large",
        "path": "$.metadata.size",
        "detail": "",
    }
    assert open_uploads(admin, target[1]) == []


@pytest.mark.parametrize("number", ["0", "10001", "x"])
def test_part_numbers_run_from_1_to_10000(alice: httpx.Client, number: str) -> None:
    """S3 refuses other part numbers; Soundpost says so first."""
    upload = Multipart.create(alice, "n.wav", "audio/wav")
    answer = alice.get(uppy.upload_path(upload.upload_id, f"/{number}"), params={"key": upload.key})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"


def test_completing_with_an_etag_that_was_not_uploaded_is_400(alice: httpx.Client, recording: bytes) -> None:
    """A part is pinned by its ETag; a made-up one assembles nothing."""
    upload = Multipart.create(alice, "e.wav", "audio/wav")
    upload.put_part(1, recording[:100])
    answer = upload.complete([{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}])
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_part"


def test_every_route_needs_a_signed_in_user(client: httpx.Client) -> None:
    """Unlike Uppy Companion, nothing under /s3 signs for strangers."""
    key = "uploads/" + keys.user_id("fake", "alice") + "/" + keys.new_upload_id() + "/a.wav"
    answers = [
        uppy.params(client, "a.wav", "audio/wav"),
        uppy.create(client, "a.wav", "audio/wav", {}),
        *[
            getattr(Multipart(client, key, "some-upload", "b"), name)(*args)
            for name, args in (
                ("sign_part", (1,)),
                ("sign_batch", ([1],)),
                ("list_parts", ()),
                ("complete", ([{"PartNumber": 1, "ETag": "x"}],)),
                ("abort", ()),
            )
        ],
    ]
    assert [a.status_code for a in answers] == [401] * 7


@pytest.mark.parametrize("size", ["²", "١٠٠", "9" * 30], ids=["superscript", "arabic-indic", "30-digits"])
def test_a_declared_size_that_is_not_ascii_digits_is_a_validation_error(
    alice: httpx.Client, size: str
) -> None:
    """str.isdigit accepts "²", which int() refuses; a size is ASCII digits or a 422, never a 500."""
    answer = uppy.create(alice, "s.wav", "audio/wav", {"size": size})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] | {"detail": ""} == {
        "code": "validation_error",
        "path": "$.metadata.size",
        "detail": "",
    }


@pytest.mark.parametrize(
    "listed", ["²", "1,²", "١", "9" * 5000], ids=["superscript", "mixed", "arabic", "long"]
)
def test_batch_part_numbers_that_are_not_ascii_digits_are_a_validation_error(
    alice: httpx.Client, listed: str
) -> None:
    """Only ASCII digits are part numbers: anything else is 422 at partNumbers, not a 500."""
    upload = Multipart.create(alice, "p.wav", "audio/wav")
    answer = alice.get(
        uppy.upload_path(upload.upload_id, "/batch"),
        params={"key": upload.key, "partNumbers": listed},
        headers=uppy.JSON,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["path"] == "partNumbers"


def test_json_nested_a_thousand_deep_is_400_malformed_json(alice: httpx.Client, recording: bytes) -> None:
    """msgspec decodes nesting by recursion; a body nested 1,000 deep is refused as malformed, not a 500."""
    deep = "[" * 1000 + "]" * 1000
    headers = {**uppy.same_origin(alice), "Content-Type": "application/json"}
    created = alice.post(
        "/s3/multipart",
        content='{"filename": "d.wav", "type": "audio/wav", "metadata": {"note": ' + deep + "}}",
        headers=headers,
    )
    assert created.status_code == 400, created.text
    assert created.json()["error"]["code"] == "malformed_json"
    upload = Multipart.create(alice, "d.wav", "audio/wav")
    part = upload.put_part(1, recording[:100])
    completed = alice.post(
        uppy.upload_path(upload.upload_id, "/complete"),
        params={"key": upload.key},
        content='{"parts": [' + json.dumps(part) + '], "extra": ' + deep + "}",
        headers=headers,
    )
    assert completed.status_code == 400, completed.text
    assert completed.json()["error"]["code"] == "malformed_json"


def test_completing_more_than_the_declared_size_is_413_and_the_upload_aborted(
    alice: httpx.Client,
    admin,
    target: tuple[devstack.S3Endpoint, str],
    recording: bytes,  # type: ignore[no-untyped-def]
) -> None:
    """Declared 1,000 bytes, sent 5 MiB as one part: S3's own part sizes are summed and the upload discarded."""
    upload = Multipart.create(alice, "small.wav", "audio/wav", size=1000)
    part = upload.put_part(1, recording[:PART])
    answer = upload.complete([part])
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "file_too_large"
    assert "1000 bytes" in answer.json()["error"]["detail"]
    assert stored_keys(admin, target[1]) == []
    assert open_uploads(admin, target[1]) == []


def test_exactly_the_declared_size_completes(alice: httpx.Client, recording: bytes) -> None:
    """The declared size is a ceiling the upload may reach."""
    upload = Multipart.create(alice, "exact.wav", "audio/wav", size=PART + 10)
    parts = [upload.put_part(1, recording[:PART]), upload.put_part(2, recording[PART : PART + 10])]
    assert upload.complete(parts).status_code == 200


def test_an_upload_id_whose_sealed_limit_was_changed_is_403(alice: httpx.Client) -> None:
    """The limit rides in the upload id under a MAC: raising it makes the id one this service never issued."""
    upload = Multipart.create(alice, "seal.wav", "audio/wav", size=1000)
    s3_id, limit, mac = upload.upload_id.rsplit(".", 2)
    assert limit == "1000"
    raised = Multipart(alice, upload.key, f"{s3_id}.{16 * MiB}.{mac}", upload.bucket)
    for answer in (
        raised.sign_part(1),
        raised.list_parts(),
        raised.complete([{"PartNumber": 1, "ETag": "x"}]),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] | {"detail": ""} == {
            "code": "forbidden",
            "path": "uploadId",
            "detail": "",
        }
    assert upload.sign_part(1).status_code == 200


def test_part_numbers_past_what_the_declared_size_needs_are_refused(alice: httpx.Client) -> None:
    """12 MiB in parts of at least 5 MiB is at most 3 parts: a fourth is never signed."""
    upload = Multipart.create(alice, "three.wav", "audio/wav", size=12 * MiB)
    assert upload.sign_batch([1, 2, 3]).status_code == 200
    for answer in (upload.sign_part(4), upload.sign_batch([3, 4])):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "validation_error"
        assert "at most 3 parts" in answer.json()["error"]["detail"]


def test_a_part_listed_twice_at_completion_is_invalid_part(alice: httpx.Client, recording: bytes) -> None:
    """Listing a part twice would count its bytes twice; it is refused as the malformed list it is."""
    upload = Multipart.create(alice, "twice.wav", "audio/wav")
    part = upload.put_part(1, recording[:100])
    answer = upload.complete([part, part])
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] | {"detail": ""} == {
        "code": "invalid_part",
        "path": "$.parts",
        "detail": "",
    }
