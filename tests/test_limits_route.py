"""GET /api/limits: what an upload must be, for the page to say before any upload."""

from __future__ import annotations

import httpx
import pytest

from tests.support.audio_samples import tone
from tests.support.uppy import same_origin, simple_upload


@pytest.fixture
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    """Only WAV and FLAC, and a quota of a million bytes."""
    return {
        **app_env,
        "SOUNDPOST_ALLOWED_TYPES": "audio/wav,audio/flac",
        "SOUNDPOST_USER_QUOTA_BYTES": "1000000",
    }


def test_limits_name_the_accepted_types_their_extensions_the_size_limit_and_the_quota(
    alice: httpx.Client,
) -> None:
    """Signed in, the answer lists the configured types with their extensions, the size limit and the quota."""
    answer = alice.get("/api/limits")
    assert answer.status_code == 200
    assert answer.json() == {
        "accepted": [
            {"type": "audio/wav", "extensions": [".wav", ".wave"]},
            {"type": "audio/flac", "extensions": [".flac"]},
        ],
        "maxUploadBytes": 10 * 1024 * 1024,
        "quotaBytes": 1_000_000,
        "usedBytes": 0,
    }


def test_used_bytes_grow_with_the_users_own_verified_upload(alice: httpx.Client, bob: httpx.Client) -> None:
    """After alice's upload is confirmed, her usedBytes is its size; bob's stays 0."""
    data = tone(1)
    key = simple_upload(alice, "one.wav", data, "audio/wav")
    confirm = alice.post(f"/api/uploads/{key.split('/')[-2]}/confirm", headers=same_origin(alice))
    assert confirm.status_code == 200, confirm.text
    assert alice.get("/api/limits").json()["usedBytes"] == len(data)
    assert bob.get("/api/limits").json()["usedBytes"] == 0


def test_limits_need_a_session(client: httpx.Client) -> None:
    """Signed out, the answer is the usual 401 shape."""
    answer = client.get("/api/limits")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "not_signed_in"
