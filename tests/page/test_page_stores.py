"""The page on either kind of store: it hashes each simple upload and sends it by POST or by PUT as presign says."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from service import devstack
from tests.support.audio_samples import tone
from tests.support.page import UPLOAD_WAIT, expect, listed, transfer, wait_playable
from tests.support.r2proxy import r2_like
from tests.support.settings import s3_settings


@pytest.fixture(params=["post", "r2"])
def store(request: pytest.FixtureRequest, s3: devstack.S3Endpoint) -> Iterator[devstack.S3Endpoint]:
    """Where the browser sends bytes: moto itself (POST) or moto behind an R2-like front (PUT)."""
    if request.param == "post":
        yield s3
    else:
        with r2_like(s3) as front:
            yield front


@pytest.fixture
def app_env(app_env: dict[str, str], store: devstack.S3Endpoint, bucket: str) -> dict[str, str]:
    return {**app_env, **s3_settings(store, bucket)}


def test_the_page_uploads_a_picked_file_with_its_sha256_by_the_method_presign_answers(
    alice: Any, stored: Any, store: devstack.S3Endpoint, s3: devstack.S3Endpoint
) -> None:
    """The page declares the file's SHA-256, sends it by POST or PUT as told, and promotion (which compares) confirms it."""
    audio = tone(2)
    methods: list[str] = []
    declared: list[dict[str, Any]] = []
    alice.on("request", lambda r: methods.append(r.method) if r.url.startswith(store.url) else None)
    alice.on("request", lambda r: declared.append(r.post_data_json) if "presigned-url" in r.url else None)
    alice.locator("#file").set_input_files({"name": "hashed.wav", "mimeType": "audio/wav", "buffer": audio})
    expect(transfer(alice, "hashed.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert stored("hashed.wav") == audio
    assert [d["checksumSha256"] for d in declared] == [
        base64.b64encode(hashlib.sha256(audio).digest()).decode()
    ]
    assert ("PUT" if store is not s3 else "POST") in methods
    wait_playable(listed(alice, "hashed.wav"))
