"""One user can never reach another's uploads: every route refuses, and nothing in the bucket changes."""

from __future__ import annotations

import httpx
import pytest

from service import devstack
from service.core import keys
from tests.support import audio_samples, uppy
from tests.support.uppy import Multipart


def bucket_state(s3: devstack.S3Endpoint, bucket: str) -> dict[str, object]:
    """Every object (key, size, ETag), every open multipart upload and its parts."""
    admin = devstack.s3_admin(s3)
    objects = [
        (o["Key"], o["Size"], o["ETag"]) for o in admin.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]
    uploads = admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    parts = {
        u["UploadId"]: [
            (p["PartNumber"], p["ETag"], p["Size"])
            for p in admin.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])
        ]
        for u in uploads
    }
    return {"objects": objects, "uploads": sorted((u["Key"], u["UploadId"]) for u in uploads), "parts": parts}


@pytest.fixture
def alices_uploads(alice: httpx.Client) -> tuple[Multipart, list[dict[str, object]], str]:
    """An open multipart upload of alice's with one part, and a stored file of hers."""
    upload = Multipart.create(alice, "private.wav", "audio/wav")
    parts = [upload.put_part(1, audio_samples.wav(1))]
    key = uppy.simple_upload(alice, "diary.wav", audio_samples.wav(1), "audio/wav")
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None
    return upload, parts, parsed[1]


def multipart_attempts(
    upload: Multipart, parts: list[dict[str, object]], key: str | None = None
) -> list[httpx.Response]:
    return [
        upload.sign_part(2, key),
        upload.sign_batch([2, 3], key),
        upload.list_parts(key),
        upload.complete(parts, key),
        upload.abort(key),
    ]


def test_another_users_multipart_upload_is_403_on_every_route(
    alices_uploads: tuple[Multipart, list[dict[str, object]], str],
    bob: httpx.Client,
    s3: devstack.S3Endpoint,
    bucket: str,
) -> None:
    """Bob holding alice's key and upload id can sign, list, complete and abort nothing."""
    upload, parts, _ = alices_uploads
    before = bucket_state(s3, bucket)
    answers = multipart_attempts(upload.as_seen_by(bob), parts)
    assert [a.status_code for a in answers] == [403] * 5
    assert {a.json()["error"]["code"] for a in answers} == {"forbidden"}
    assert bucket_state(s3, bucket) == before


def test_another_users_upload_id_under_ones_own_key_is_403(
    alices_uploads: tuple[Multipart, list[dict[str, object]], str],
    bob: httpx.Client,
    s3: devstack.S3Endpoint,
    bucket: str,
) -> None:
    """The upload id must belong to the key: bob's own key with alice's upload id reaches nothing."""
    upload, parts, _ = alices_uploads
    bobs = Multipart.create(bob, "mine.wav", "audio/wav")
    before = bucket_state(s3, bucket)
    answers = multipart_attempts(upload.as_seen_by(bob), parts, key=bobs.key)
    assert [a.status_code for a in answers] == [403] * 5
    assert bucket_state(s3, bucket) == before


def test_a_made_up_upload_id_is_403(alice: httpx.Client, s3: devstack.S3Endpoint, bucket: str) -> None:
    """A key of one's own with an upload id S3 never issued for it touches nothing."""
    mine = Multipart.create(alice, "mine.wav", "audio/wav")
    before = bucket_state(s3, bucket)
    answers = multipart_attempts(
        Multipart(alice, mine.key, "not-an-upload", mine.bucket), [{"PartNumber": 1, "ETag": '"x"'}]
    )
    assert [a.status_code for a in answers] == [403] * 5
    assert bucket_state(s3, bucket) == before


@pytest.mark.parametrize("key", ["", "uploads/x", "../etc/passwd", "other-prefix/a/b/c.wav"])
def test_keys_this_service_did_not_build_are_403(alice: httpx.Client, key: str) -> None:
    """Only keys of the form prefix/user/upload/filename are considered at all."""
    mine = Multipart.create(alice, "mine.wav", "audio/wav")
    assert mine.sign_part(1, key=key or " ").status_code == 403


def test_another_users_upload_is_404_like_a_missing_one(
    alices_uploads: tuple[Multipart, list[dict[str, object]], str],
    bob: httpx.Client,
    s3: devstack.S3Endpoint,
    bucket: str,
) -> None:
    """Confirm, play and delete answer bob exactly as for an id that never existed."""
    _, _, upload_id = alices_uploads
    missing = keys.new_upload_id()
    before = bucket_state(s3, bucket)
    headers = uppy.same_origin(bob)
    for path, method in (
        ("/api/uploads/{}/confirm", "POST"),
        ("/api/uploads/{}/url", "GET"),
        ("/api/uploads/{}", "DELETE"),
    ):
        theirs = bob.request(method, path.format(upload_id), headers=headers)
        nowhere = bob.request(method, path.format(missing), headers=headers)
        assert theirs.status_code == nowhere.status_code == 404
        assert theirs.json() == nowhere.json()
    assert bob.get("/api/uploads").json() == {"uploads": [], "nextCursor": None}
    assert bucket_state(s3, bucket) == before
