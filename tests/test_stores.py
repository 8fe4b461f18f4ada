"""Every S3-compatible store: presigned PUT on radosgw, an R2-like store, the capability check and integrity.

radosgw (Ceph 16.2) checks signatures, so it proves what a PUT's signature pins; it
does not check ``x-amz-checksum-sha256``, so it also proves that promotion does.
The R2-like store is moto behind ``tests/support/r2proxy.py``, which answers POST
Object with 501 as Cloudflare R2 does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import botocore.auth
import httpx
import pytest

from service import devstack
from service.devstack import S3Endpoint
from service.settings import load_settings
from service.storage.capabilities import StoreUnsuitable
from service.storage.client import open_storage
from tests.support import audio_samples
from tests.support.bucket import run_bucket_command, run_bucket_setup
from tests.support.flows import sign_in
from tests.support.r2proxy import r2_like
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, object_keys, upload_id_of
from tests.support.settings import MINIMAL_SETTINGS, s3_settings
from tests.support.uppy import Multipart
from tests.test_policy import environment, new_key
from tests.test_policy import presign as presign_post
from tests.test_storage_errors import start

pytestmark = pytest.mark.peers  # real servers started by the tests themselves

AUDIO = audio_samples.wav(0.5)


def sha256_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def fresh_bucket(endpoint: S3Endpoint) -> str:
    name = f"stores-{secrets.token_hex(6)}"
    devstack.create_bucket(endpoint, name, ["http://127.0.0.1"])
    return name


def presign(client: httpx.Client, data: bytes = AUDIO, **extra: object) -> httpx.Response:
    body = {"filename": "take.wav", "contentType": "audio/wav", "size": len(data), **extra}
    return client.post("/api/upload/presigned-url", json=body)


def put(answer: dict[str, object], data: bytes, **headers: str) -> httpx.Response:
    """PUT as a browser does: the signed headers (but Content-Length, which it sets itself), then any extra."""
    signed = {k: v for k, v in answer["headers"].items() if k != "Content-Length"}  # type: ignore[attr-defined]
    return httpx.put(str(answer["url"]), content=data, headers={**signed, **headers}, timeout=10)


def confirm(client: httpx.Client, key: str) -> httpx.Response:
    return client.post(f"/api/uploads/{upload_id_of(key)}/confirm")


# --- radosgw, SOUNDPOST_UPLOAD_METHOD=put -------------------------------------------------------------


@pytest.fixture
def rgw_store(request: pytest.FixtureRequest) -> tuple[S3Endpoint, str]:
    """The session's radosgw and a fresh bucket on it."""
    endpoint: S3Endpoint = request.getfixturevalue("rgw_endpoint")
    return endpoint, fresh_bucket(endpoint)


@pytest.fixture
def app_env(app_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The conftest app, on radosgw in PUT mode unless a test asks for POST there or for the R2-like store."""
    store = getattr(request, "param", "rgw")
    if store in ("rgw", "rgw-post"):
        rgw: tuple[S3Endpoint, str] = request.getfixturevalue("rgw_store")
        method = "put" if store == "rgw" else "auto"
        return {**app_env, **s3_settings(*rgw), "SOUNDPOST_UPLOAD_METHOD": method}
    proxied: tuple[S3Endpoint, str] = request.getfixturevalue("r2_store")
    return {**app_env, **s3_settings(*proxied), "SOUNDPOST_UPLOAD_METHOD": "auto"}


@pytest.fixture
def r2_store(s3: S3Endpoint, bucket: str) -> Iterator[tuple[S3Endpoint, str]]:
    """moto behind an R2-like front: the session's moto bucket, reached through the proxy."""
    with r2_like(s3) as front:
        yield front, bucket


def stored(endpoint: S3Endpoint, bucket: str) -> list[str]:
    return object_keys(endpoint, bucket)


def test_put_mode_answers_a_presigned_put_with_every_header_signed(alice: httpx.Client) -> None:
    """PUT mode: method PUT, no fields, and length, type, ACL, checksum and metadata in SignedHeaders."""
    answer = presign(alice, checksumSha256=sha256_of(AUDIO))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["method"] == "PUT" and "fields" not in body
    assert body["headers"]["Content-Length"] == str(len(AUDIO))
    assert body["headers"]["Content-Type"] == "audio/wav"
    assert body["headers"]["x-amz-acl"] == "private"
    assert body["headers"]["x-amz-checksum-sha256"] == sha256_of(AUDIO)
    query = dict(item.split("=", 1) for item in urlsplit(body["url"]).query.split("&"))
    signed = set(query["X-Amz-SignedHeaders"].replace("%3B", ";").split(";"))
    assert {name.lower() for name in body["headers"]} | {"host"} == signed


def test_put_mode_requires_the_size(alice: httpx.Client) -> None:
    """A PUT signs the exact length, so presign without a size is 422 naming $.size."""
    answer = alice.post(
        "/api/upload/presigned-url", json={"filename": "take.wav", "contentType": "audio/wav"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["path"] == "$.size"


def test_valid_put_stores_exactly_the_bytes_with_the_canonical_type_and_confirms(
    alice: httpx.Client,
    rgw_store: tuple[S3Endpoint, str],
) -> None:
    """The signed PUT stores the file as sent; confirm promotes it and playback serves the same bytes."""
    body = presign(alice, checksumSha256=sha256_of(AUDIO)).json()
    sent = put(body, AUDIO)
    assert sent.status_code == 200, sent.text
    endpoint, rgw_bucket = rgw_store
    with admin(endpoint) as client:
        got = client.get_object(Bucket=rgw_bucket, Key=body["key"])
        assert (got["Body"].read(), got["ContentType"]) == (AUDIO, "audio/wav")
        got["Body"].close()
    confirmed = confirm(alice, body["key"])
    assert confirmed.status_code == 200, confirmed.text
    link = alice.get(f"/api/uploads/{upload_id_of(body['key'])}/url").json()["url"]
    assert httpx.get(link, timeout=10).content == AUDIO


@pytest.mark.parametrize(
    "tamper",
    ["one byte more", "another type", "another key", "tampered signature", "public-read acl"],
)
def test_the_store_refuses_what_the_signature_does_not_cover_and_stores_nothing(
    alice: httpx.Client,
    rgw_store: tuple[S3Endpoint, str],
    tamper: str,
) -> None:
    """radosgw answers 403 to another length, type, key, signature or ACL, and nothing lands."""
    body = presign(alice).json()
    url, data, extra = body["url"], AUDIO, {}
    if tamper == "one byte more":
        data = AUDIO + b"\0"
    elif tamper == "another type":
        extra = {"Content-Type": "audio/mpeg"}
    elif tamper == "another key":
        body["url"] = url.replace("/take.wav?", "/other.wav?")
    elif tamper == "tampered signature":
        signature = urlsplit(url).query.rsplit("X-Amz-Signature=", 1)[1]
        body["url"] = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    else:
        extra = {"x-amz-acl": "public-read"}
    answer = put(body, data, **extra)
    assert answer.status_code == 403, answer.text
    assert stored(*rgw_store) == []


def test_an_expired_put_url_is_refused(
    rgw_store: tuple[S3Endpoint, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL signed two hours ago with the 600 s TTL: the store refuses it and stores nothing."""
    endpoint, name = rgw_store
    past = datetime.now(UTC) - timedelta(hours=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    key = new_key("take.wav")

    async def sign() -> dict[str, object]:
        async with open_storage(load_settings(environment(endpoint, name))) as storage:
            signed = await storage.presign_put(key, "audio/wav", len(AUDIO))
        return {"url": signed.url, "headers": signed.headers}

    signed = asyncio.run(sign())
    monkeypatch.undo()  # the checks below sign with the real clock
    answer = put(signed, AUDIO)
    assert answer.status_code == 403, answer.text
    assert stored(endpoint, name) == []


def test_an_added_public_read_header_never_makes_an_object_readable_anonymously(
    alice: httpx.Client,
    rgw_store: tuple[S3Endpoint, str],
) -> None:
    """With the signed private ACL and the upload sent as signed, an anonymous GET is refused."""
    body = presign(alice).json()
    assert put(body, AUDIO).status_code == 200
    assert put(body, AUDIO, **{"x-amz-acl": "public-read"}).status_code == 403
    anonymous = httpx.get(f"{rgw_store[0].url}/{rgw_store[1]}/{body['key']}", timeout=10)
    assert anonymous.status_code == 403


def test_a_wrong_checksum_with_the_right_length_is_refused_at_confirm_and_never_playable(
    alice: httpx.Client,
    rgw_store: tuple[S3Endpoint, str],
) -> None:
    """radosgw stores it; confirm reads it, answers 422 checksum_mismatch, deletes it; nothing plays."""
    forged = bytearray(AUDIO)
    forged[-1] ^= 0xFF
    body = presign(alice, checksumSha256=sha256_of(AUDIO)).json()
    assert put(body, bytes(forged)).status_code == 200  # radosgw 16.2 does not check the checksum
    refused = confirm(alice, body["key"])
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "checksum_mismatch"
    assert alice.get(f"/api/uploads/{upload_id_of(body['key'])}/url").status_code == 404
    assert [k for k in stored(*rgw_store) if "/library/" in k or k == body["key"]] == []


def test_bob_cannot_write_alices_key(
    alice: httpx.Client,
    app_url: str,
    rgw_store: tuple[S3Endpoint, str],
) -> None:
    """Bob's signature is for his own key: sent to alice's key, the store refuses it."""
    alices = presign(alice).json()
    with httpx.Client(base_url=app_url, follow_redirects=False, timeout=10) as bob:
        assert sign_in(bob, "fake", "bob").status_code == 303
        bobs = presign(bob).json()
    query = urlsplit(bobs["url"]).query
    aimed = {**bobs, "url": alices["url"].split("?", 1)[0] + "?" + query}
    assert put(aimed, AUDIO).status_code == 403
    assert stored(*rgw_store) == []


@pytest.mark.parametrize("app_env", ["rgw-post"], indirect=True)
def test_post_mode_pins_the_declared_checksum_and_confirm_refuses_other_bytes(
    alice: httpx.Client, rgw_store: tuple[S3Endpoint, str]
) -> None:
    """auto on radosgw is POST; the policy pins x-amz-meta-sha256, so a form without it is refused, and
    other bytes under the right field are stored by radosgw but refused at confirm."""
    body = presign(alice, checksumSha256=sha256_of(AUDIO)).json()
    assert body["method"] == "POST" and body["fields"]["x-amz-meta-sha256"] == sha256_of(AUDIO)
    files = {"file": ("take.wav", AUDIO, "audio/wav")}
    unpinned = {k: v for k, v in body["fields"].items() if k != "x-amz-meta-sha256"}
    assert httpx.post(body["url"], data=unpinned, files=files, timeout=10).status_code == 403
    assert stored(*rgw_store) == []
    forged = AUDIO[:-1] + bytes([AUDIO[-1] ^ 0xFF])
    sent = httpx.post(body["url"], data=body["fields"], files={"file": ("take.wav", forged, "audio/wav")})
    assert sent.status_code == 201, sent.text
    refused = confirm(alice, body["key"])
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "checksum_mismatch"
    assert [key for key in stored(*rgw_store) if key.endswith("/take.wav")] == []  # only the decision stays


def test_a_part_url_signed_with_a_checksum_needs_that_checksum_and_assembles(
    alice: httpx.Client, rgw_store: tuple[S3Endpoint, str]
) -> None:
    """checksumSha256 on a part URL is signed: the PUT without that header is refused, with it the part lands."""
    data = audio_samples.wav(0.5)
    upload = Multipart.create(alice, "parts.wav", "audio/wav", len(data))
    signed = alice.get(
        f"/s3/multipart/{upload.upload_id}/1",
        params={"key": upload.key, "checksumSha256": sha256_of(data)},
        headers={"Accept": "application/json"},
    )
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    assert "x-amz-checksum-sha256" in urlsplit(url).query.replace("%3B", ";")
    assert httpx.put(url, content=data, timeout=10).status_code == 403
    sent = httpx.put(url, content=data, headers={"x-amz-checksum-sha256": sha256_of(data)}, timeout=10)
    assert sent.status_code == 200, sent.text
    done = upload.complete([{"PartNumber": 1, "ETag": sent.headers["ETag"].strip('"')}])
    assert done.status_code == 200, done.text
    assert confirm(alice, upload.key).status_code == 200


def test_a_malformed_part_checksum_is_a_422(alice: httpx.Client) -> None:
    """Only base64 of 32 bytes is a SHA-256: anything else is refused before signing."""
    upload = Multipart.create(alice, "parts.wav", "audio/wav", 100)
    answer = alice.get(
        f"/s3/multipart/{upload.upload_id}/1",
        params={"key": upload.key, "checksumSha256": "not-a-sha"},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 422, answer.text


# --- POST-mode hardening: Ceph CVE-2023-43040 --------------------------------------------------------


def test_a_post_that_adds_a_bucket_field_cannot_write_to_another_bucket(
    rgw_store: tuple[S3Endpoint, str],
) -> None:
    """An extra ``bucket`` form field (Ceph CVE-2023-43040) changes nothing: the other bucket stays empty.

    Measured on radosgw 16.2.15: it answers 201 and stores the object at the signed key in
    the URL's bucket, which the policy pins; the field is ignored, never obeyed.
    """
    endpoint = rgw_store[0]
    ours, theirs = rgw_store[1], fresh_bucket(endpoint)
    key = new_key()
    post = presign_post(load_settings(environment(endpoint, ours)), key)
    form = {**post.fields, "bucket": theirs}
    audio = b"ID3" + bytes(600)
    answer = httpx.post(post.url, data=form, files={"file": ("take-1.mp3", audio, "audio/mpeg")})
    assert answer.status_code in (201, 400, 403), answer.text
    assert stored(endpoint, theirs) == []
    assert stored(endpoint, ours) in ([], [key])


# --- the R2-like store ----------------------------------------------------------------------------


@pytest.mark.parametrize("app_env", ["r2"], indirect=True)
def test_auto_picks_put_behind_an_r2_like_store_and_uploads_through_it(
    alice: httpx.Client, r2_store: tuple[S3Endpoint, str], s3: S3Endpoint, bucket: str
) -> None:
    """auto probes, finds POST refused with 501, and presigns PUTs that upload and confirm through the proxy."""
    body = presign(alice, checksumSha256=sha256_of(AUDIO)).json()
    assert body["method"] == "PUT"
    assert body["url"].startswith(f"{r2_store[0].url}/{bucket}/")
    assert put(body, AUDIO).status_code == 200
    confirmed = confirm(alice, body["key"])
    assert confirmed.status_code == 200, confirmed.text
    uppy = alice.get("/s3/params", params={"filename": "t.wav", "type": "audio/wav", "metadata[size]": "9"})
    assert uppy.status_code == 200 and uppy.json()["method"] == "PUT" and "headers" in uppy.json()


def test_post_in_front_of_an_r2_like_store_stops_start_up_naming_the_setting(
    app_env: dict[str, str], r2_store: tuple[S3Endpoint, str], caplog: pytest.LogCaptureFixture
) -> None:
    """SOUNDPOST_UPLOAD_METHOD=post on a store that refuses POST uploads: start-up fails naming it."""
    env = {**app_env, **s3_settings(*r2_store), "SOUNDPOST_UPLOAD_METHOD": "post"}
    with caplog.at_level(logging.ERROR, logger="soundpost"), pytest.raises(StoreUnsuitable) as refused:
        start(env)
    assert "SOUNDPOST_UPLOAD_METHOD" in str(refused.value)


# --- soundpost bucket check -------------------------------------------------------------------------


def bucket_check(endpoint: S3Endpoint, bucket: str) -> subprocess.CompletedProcess[str]:
    """``soundpost bucket check`` against ``bucket`` on ``endpoint``, with the fewest settings that load."""
    return run_bucket_command("check", {**MINIMAL_SETTINGS, **s3_settings(endpoint, bucket)})


def rows(output: str) -> dict[str, str]:
    """Behaviour -> yes / NO / unknown, from the printed table."""
    found = {}
    for line in output.splitlines():
        parts = line.split("  ")
        cells = [p.strip() for p in parts if p.strip()]
        if len(cells) >= 3 and cells[1] in ("yes", "NO", "unknown"):
            found[cells[0]] = cells[1]
    return found


@pytest.fixture
def checked_store(
    request: pytest.FixtureRequest, s3: S3Endpoint, bucket: str
) -> Iterator[tuple[S3Endpoint, str]]:
    """The store ``soundpost bucket check`` probes: moto, radosgw, or moto behind an R2-like front."""
    if request.param == "moto":
        yield s3, bucket
    elif request.param == "rgw":
        yield request.getfixturevalue("rgw_store")
    else:
        refusing = request.param == "no-checksums"
        with r2_like(s3, ignore_conditions=request.param == "ignoring", refuse_checksums=refusing) as front:
            yield front, bucket


@pytest.mark.parametrize(
    ("checked_store", "status", "expected"),
    [
        (
            "moto",
            0,
            {
                "POST-policy uploads": "yes",
                "If-None-Match: * honoured": "yes",
                "presigned PUT with signed length": "NO",
                "CopySourceIfMatch honoured": "NO",
            },
        ),
        (
            "rgw",
            0,
            {
                "POST-policy uploads": "yes",
                "presigned PUT with signed length": "yes",
                "If-None-Match: * honoured": "yes",
                "checksums enforced": "NO",
                "multipart part checksums taken": "yes",
            },
        ),
        ("r2", 0, {"POST-policy uploads": "NO", "If-None-Match: * honoured": "yes"}),
        ("no-checksums", 0, {"multipart part checksums taken": "NO", "If-None-Match: * honoured": "yes"}),
        ("ignoring", 1, {"If-None-Match: * honoured": "NO", "If-Match honoured": "NO"}),
    ],
    indirect=["checked_store"],
)
def test_bucket_check_prints_what_the_store_does_and_exits_non_zero_when_a_need_is_missing(
    checked_store: tuple[S3Endpoint, str], status: int, expected: dict[str, str]
) -> None:
    """The table's rows for each store, its exit status, and no probe object left behind."""
    done = bucket_check(*checked_store)
    assert done.returncode == status, done.stdout + done.stderr
    table = rows(done.stdout)
    assert {name: table[name] for name in expected} == expected
    assert set(table) == {
        "POST-policy uploads",
        "presigned PUT with signed length",
        "If-None-Match: * honoured",
        "If-Match honoured",
        "CopySourceIfMatch honoured",
        "checksums enforced",
        "multipart part checksums taken",
        "abort-multipart lifecycle rule kept",
        "bucket notifications",
    }
    if status:
        assert "missing what Soundpost needs: If-None-Match: * honoured, If-Match honoured" in done.stdout
    assert object_keys(*checked_store) == []  # the probes clean up after themselves


def test_start_up_refuses_a_store_that_ignores_conditional_writes(
    app_env: dict[str, str], s3: S3Endpoint, bucket: str
) -> None:
    """Exactly-once announcements rest on If-None-Match: a store that ignores it stops start-up, saying so."""
    with r2_like(s3, ignore_conditions=True) as front:
        env = {**app_env, **s3_settings(front, bucket)}
        with pytest.raises(StoreUnsuitable, match="ignores If-None-Match"):
            start(env)


def test_bucket_setup_reports_a_store_that_drops_the_abort_rule_and_check_agrees(
    app_env: dict[str, str], rgw_store: tuple[S3Endpoint, str]
) -> None:
    """As on MinIO: setup says the abort part was dropped and names MinIO's own expiry; check shows NO."""
    with r2_like(rgw_store[0], drop_abort_rule=True) as front:
        env = {
            **app_env,
            **s3_settings(front, rgw_store[1]),
            "SOUNDPOST_PUBLIC_URL": "https://soundpost.example",
        }
        done = run_bucket_setup(env)
        assert done.returncode == 0, done.stderr
        assert "dropped its abort-incomplete-multipart part" in done.stdout
        assert "MINIO_API_STALE_UPLOADS_EXPIRY" in done.stdout
        assert rows(bucket_check(front, rgw_store[1]).stdout)["abort-multipart lifecycle rule kept"] == "NO"
    assert rows(bucket_check(*rgw_store).stdout)["abort-multipart lifecycle rule kept"] == "yes"
