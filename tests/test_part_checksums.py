"""Multipart uploads with SHA-256 part checksums, on moto and radosgw: declared at completion, checked at promotion.

Neither store checks a part's ``x-amz-checksum-sha256`` (moto 5.2, radosgw 16.2 store
other bytes under it) nor the checksums named in CompleteMultipartUpload, so promotion
is what refuses a part whose bytes are not the ones declared.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest

from service.core import keys
from service.devstack import S3Endpoint
from tests.conftest import signed_in
from tests.support import audio_samples
from tests.support.r2proxy import r2_like
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import object_keys, upload_id_of
from tests.support.settings import s3_settings
from tests.support.sweep import run_sweep
from tests.support.uppy import Multipart, same_origin
from tests.support.webhooks import Receiver, webhook_env
from tests.test_stores import fresh_bucket

MiB = 1024 * 1024
# Two parts, the first of S3's smallest size: about a minute of 48 kHz audio.
AUDIO = audio_samples.wav(60, rate=48_000)
FIRST, SECOND = AUDIO[: 5 * MiB], AUDIO[5 * MiB :]


def sha256_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture(params=["moto", "rgw"])
def store(request: pytest.FixtureRequest, s3: S3Endpoint, bucket: str) -> tuple[S3Endpoint, str]:
    """moto (the conftest bucket) or the session's radosgw with a fresh bucket."""
    if request.param == "moto":
        return s3, bucket
    endpoint: S3Endpoint = request.getfixturevalue("rgw_endpoint")
    return endpoint, fresh_bucket(endpoint)


@pytest.fixture
def alice(
    app_env: dict[str, str], store: tuple[S3Endpoint, str], receiver: Receiver
) -> Iterator[httpx.Client]:
    """Alice signed in to the app on that store, announcing to ``receiver``."""
    with signed_in(webhook_env({**app_env, **s3_settings(*store)}, receiver.url)) as client:
        yield client


def confirm(client: httpx.Client, key: str) -> httpx.Response:
    return client.post(f"/api/uploads/{upload_id_of(key)}/confirm", headers=same_origin(client))


def announced(receiver: Receiver, upload_id: str) -> list[dict[str, object]]:
    """The deliveries for this upload, waiting a little: confirm announces after it answers."""
    for _ in range(100):
        found = [e for e in receiver.verified() if e["data"]["id"] == upload_id]  # type: ignore[index]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_parts_with_their_checksums_confirm_and_the_library_holds_exactly_the_bytes(
    alice: httpx.Client, store: tuple[S3Endpoint, str], receiver: Receiver
) -> None:
    """Every part signed and sent with its SHA-256, named at complete: 200, the exact bytes, no record left."""
    upload = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
    parts = [upload.put_part(1, FIRST, sha256_of(FIRST)), upload.put_part(2, SECOND, sha256_of(SECOND))]
    done = upload.complete(parts)
    assert done.status_code == 200, done.text
    record = keys.parts_key("uploads/", keys.user_id("fake", "alice"), upload_id_of(upload.key))
    assert record in object_keys(*store)  # kept beside the object until promotion
    confirmed = confirm(alice, upload.key)
    assert confirmed.status_code == 200, confirmed.text
    playback = alice.get(f"/api/uploads/{confirmed.json()['id']}/url")
    assert httpx.get(playback.json()["url"], timeout=30).content == AUDIO  # as a browser plays it
    assert [e["type"] for e in announced(receiver, upload_id_of(upload.key))] == ["upload.confirmed"]
    left = object_keys(*store)
    assert upload.key not in left and record not in left


@pytest.mark.parametrize("signed", [True, False], ids=["checksum-signed-on-the-part", "declared-at-complete"])
def test_a_part_whose_bytes_are_not_the_declared_ones_is_refused_at_confirm_and_never_playable(
    alice: httpx.Client, store: tuple[S3Endpoint, str], receiver: Receiver, signed: bool
) -> None:
    """The store keeps the other bytes (it checks no part checksum); confirm answers 422 checksum_mismatch,
    deletes the object and its parts record, announces the refusal, and nothing plays."""
    forged = bytearray(SECOND)
    forged[-1] ^= 0xFF
    upload = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
    first = upload.put_part(1, FIRST, sha256_of(FIRST))
    if signed:  # the page's way: the part URL pins the header, the store does not compare it
        second = upload.put_part(2, bytes(forged), sha256_of(SECOND))
    else:
        second = {**upload.put_part(2, bytes(forged)), "ChecksumSHA256": sha256_of(SECOND)}
    assert upload.complete([first, second]).status_code == 200
    refused = confirm(alice, upload.key)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "checksum_mismatch"
    assert "part 2" in refused.json()["error"]["detail"]
    upload_id = upload_id_of(upload.key)
    events = announced(receiver, upload_id)
    assert [(e["type"], e["data"]["code"]) for e in events] == [("upload.rejected", "checksum_mismatch")]  # type: ignore[index]
    assert alice.get(f"/api/uploads/{upload_id}/url").status_code == 404
    assert [k for k in object_keys(*store) if f"/{upload_id}/" in k] == []  # no staging, record or library


def test_an_upload_created_with_part_checksums_needs_one_for_every_part(
    alice: httpx.Client, store: tuple[S3Endpoint, str]
) -> None:
    """A part without its SHA-256 is a 422 naming where, before anything is assembled or recorded."""
    upload = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
    parts = [upload.put_part(1, FIRST, sha256_of(FIRST)), upload.put_part(2, SECOND)]
    answer = upload.complete(parts)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["path"] == "$.parts[1].ChecksumSHA256"
    assert object_keys(*store) == []
    assert upload.complete([*parts[:1], {**parts[1], "ChecksumSHA256": sha256_of(SECOND)}]).status_code == 200


@pytest.mark.parametrize("store", ["moto"], indirect=True)
@pytest.mark.parametrize(
    "checksum", ["not-base64!", base64.b64encode(bytes(31)).decode(), sha256_of(b"x").rstrip("="), 7]
)
def test_a_malformed_part_checksum_at_complete_is_a_422_with_its_path(
    alice: httpx.Client, store: tuple[S3Endpoint, str], checksum: object
) -> None:
    upload = Multipart.create(alice, "take.wav", "audio/wav", 100, checksums=True)
    answer = upload.complete([{"PartNumber": 1, "ETag": "abc", "ChecksumSHA256": checksum}])
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["path"] == "$.parts[0].ChecksumSHA256"


@pytest.mark.parametrize("store", ["moto"], indirect=True)
def test_only_sha256_may_be_asked_for_and_stock_uppy_is_answered_as_before(
    alice: httpx.Client, store: tuple[S3Endpoint, str]
) -> None:
    """``checksumAlgorithm`` other than SHA256 is a 422; without it the answer names no algorithm and
    complete takes parts without checksums."""
    body = {"filename": "take.wav", "type": "audio/wav", "metadata": {"checksumAlgorithm": "CRC32"}}
    refused = alice.post("/s3/multipart", json=body, headers=same_origin(alice))
    assert refused.status_code == 422 and refused.json()["error"]["path"] == "$.metadata.checksumAlgorithm"
    asked = Multipart.create(alice, "a.wav", "audio/wav", len(AUDIO), checksums=True)
    assert asked.upload_id.rsplit(".", 2)[1].endswith("s")
    stock = alice.post(
        "/s3/multipart",
        json={"filename": "b.wav", "type": "audio/wav", "metadata": {}},
        headers=same_origin(alice),
    )
    assert stock.status_code == 200 and "checksumAlgorithm" not in stock.json()
    upload = Multipart(alice, stock.json()["key"], stock.json()["uploadId"], stock.json()["bucket"])
    assert upload.complete([upload.put_part(1, FIRST), upload.put_part(2, SECOND)]).status_code == 200
    assert confirm(alice, upload.key).status_code == 200


@pytest.mark.parametrize("store", ["moto"], indirect=True)
def test_a_sweep_keeps_a_parts_record_beside_its_upload_and_refuses_the_upload_with_it(
    app_env: dict[str, str], store: tuple[S3Endpoint, str], receiver: Receiver
) -> None:
    """The sweeper takes the record for no stray key: it promotes (here refuses) the upload, and both go."""
    env = {**webhook_env({**app_env, **s3_settings(*store)}, receiver.url), "SOUNDPOST_STAGING_GRACE": "0"}
    with signed_in(env) as alice:
        upload = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
        first = upload.put_part(1, FIRST, sha256_of(FIRST))
        second = {**upload.put_part(2, SECOND[:-1] + b"\xff"), "ChecksumSHA256": sha256_of(SECOND)}
        assert upload.complete([first, second]).status_code == 200
    swept = run_sweep(env)
    assert swept.returncode == 0, swept.stderr
    assert "rejected 1" in swept.stdout and "expired 0" in swept.stdout, swept.stdout
    upload_id = upload_id_of(upload.key)
    assert [e["data"]["code"] for e in announced(receiver, upload_id)] == ["checksum_mismatch"]  # type: ignore[index]
    assert [k for k in object_keys(*store) if f"/{upload_id}/" in k] == []


@pytest.mark.parametrize("store", ["moto"], indirect=True)
def test_deleting_a_pending_upload_removes_its_parts_record_too(
    alice: httpx.Client, store: tuple[S3Endpoint, str]
) -> None:
    upload = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
    parts = [upload.put_part(1, FIRST, sha256_of(FIRST)), upload.put_part(2, SECOND, sha256_of(SECOND))]
    assert upload.complete(parts).status_code == 200
    upload_id = upload_id_of(upload.key)
    assert [u["id"] for u in alice.get("/api/uploads").json()["uploads"]] == [upload_id]  # one, not two
    assert alice.delete(f"/api/uploads/{upload_id}", headers=same_origin(alice)).status_code == 204
    assert [k for k in object_keys(*store) if f"/{upload_id}/" in k] == []


def test_a_store_without_checksums_gets_the_upload_without_them_and_promotion_still_checks_each_part(
    app_env: dict[str, str], s3: S3Endpoint, bucket: str, receiver: Receiver
) -> None:
    """A store that refuses checksum headers (501): created without the algorithm, parts signed without
    theirs, the store never told; the declaration is kept, so a forged part is still refused at confirm."""
    with r2_like(s3, refuse_checksums=True) as front:
        env = webhook_env({**app_env, **s3_settings(front, bucket)}, receiver.url)
        with signed_in(env) as alice:
            good = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
            assert good.upload_id.rsplit(".", 2)[1].endswith("k")  # kept for promotion, not the store's
            signed = good.sign_part(1, checksum=sha256_of(FIRST))
            assert "headers" not in signed.json() and "checksum" not in signed.json()["url"].lower()
            parts = [good.put_part(1, FIRST, sha256_of(FIRST)), good.put_part(2, SECOND, sha256_of(SECOND))]
            assert good.complete(parts).status_code == 200
            assert confirm(alice, good.key).status_code == 200

            forged = Multipart.create(alice, "take.wav", "audio/wav", len(AUDIO), checksums=True)
            first = forged.put_part(1, FIRST, sha256_of(FIRST))
            second = forged.put_part(2, SECOND[:-1] + b"\xff", sha256_of(SECOND))
            assert forged.complete([first, second]).status_code == 200
            refused = confirm(alice, forged.key)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "checksum_mismatch"
