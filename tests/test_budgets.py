"""Budgets on every route that signs or calls S3; the largest allowed file still signs every part at once.

Signing is local computation, so signing every part of a maximal upload needs no
bytes uploaded: only the multipart upload itself is created, against moto.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.core.budgets import BUDGETS
from tests.conftest import serve_app
from tests.support import uppy
from tests.support.flows import sign_in
from tests.support.uppy import Multipart

MiB = 1024 * 1024
GiB = 1024 * MiB


def defaults(app_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The test app with every budget and the upload maximum at their defaults, plus ``extra``."""
    env = {k: v for k, v in app_env.items() if k != "SOUNDPOST_MAX_UPLOAD_BYTES"}
    assert not any(f"SOUNDPOST_{budget.setting}" in env for budget in BUDGETS)
    return {**env, **extra}


@contextlib.contextmanager
def signed_in(env: dict[str, str]) -> Iterator[httpx.Client]:
    """The app served with ``env``, and a client signed in to it as alice."""
    with serve_app(env) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert sign_in(c, "fake", "alice").status_code == 303
        yield c


def sign_every_part(upload: Multipart, parts: int) -> list[httpx.Response]:
    """As Uppy's batch signer does: 100 part numbers at a time, from 1 up."""
    return [upload.sign_batch(list(range(n, min(n + 100, parts + 1)))) for n in range(1, parts + 1, 100)]


@pytest.mark.parametrize(
    ("max_bytes", "parts"), [(None, 100), (5 * GiB, 1024)], ids=["default-500-MiB", "largest-5-GiB"]
)
def test_every_part_of_a_maximal_upload_signs_in_well_under_a_minute_with_default_budgets(
    app_env: dict[str, str], max_bytes: int | None, parts: int
) -> None:
    """The old single budget refused a 500 MiB upload's 61st signature; now every 5 MiB part signs at once."""
    extra = {"SOUNDPOST_MAX_UPLOAD_BYTES": str(max_bytes)} if max_bytes else {}
    with signed_in(defaults(app_env, **extra)) as alice:
        upload = Multipart.create(alice, "long.wav", "audio/wav", size=max_bytes or 500 * MiB)
        started = time.monotonic()
        answers = sign_every_part(upload, parts)
        elapsed = time.monotonic() - started
        past = upload.sign_part(parts + 1)
    assert [a.status_code for a in answers] == [200] * len(answers), answers[-1].text
    urls = {int(n): url for a in answers for n, url in a.json()["presignedUrls"].items()}
    assert sorted(urls) == list(range(1, parts + 1))
    s3_upload_id = upload.upload_id.rsplit(".", 2)[0]
    for number, url in urls.items():
        query = parse_qs(urlsplit(url).query)
        assert query["partNumber"] == [str(number)] and query["uploadId"] == [s3_upload_id]
    assert elapsed < 15, f"signing {parts} parts took {elapsed:.1f} s"
    assert past.status_code == 422
    assert f"at most {parts} parts" in past.json()["error"]["detail"]


def test_one_user_cannot_sign_parts_without_bound_across_uploads(
    app_env: dict[str, str],
) -> None:
    """Each upload signs what it needs, but all of one user's part signatures share 2,000 a minute."""
    with signed_in(defaults(app_env, SOUNDPOST_MAX_UPLOAD_BYTES=str(5 * GiB))) as alice:
        first = Multipart.create(alice, "one.wav", "audio/wav", size=5 * GiB)
        second = Multipart.create(alice, "two.wav", "audio/wav", size=5 * GiB)
        assert {a.status_code for a in sign_every_part(first, 1024)} == {200}
        answers = sign_every_part(second, 1024)
    signed = sum(len(a.json()["presignedUrls"]) for a in answers if a.status_code == 200)
    assert 1024 + signed <= 2000 < 2048
    refused = next(a for a in answers if a.status_code != 200)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_an_uploads_part_signatures_are_budgeted_per_part_it_needs(
    app_env: dict[str, str],
) -> None:
    """At 2 signatures per part an hour, a 2-part upload signs 4 times (retries included) and then waits."""
    with signed_in(defaults(app_env, SOUNDPOST_PART_RATE_LIMIT="2/hour")) as alice:
        upload = Multipart.create(alice, "retry.wav", "audio/wav", size=10 * MiB)
        other = Multipart.create(alice, "other.wav", "audio/wav", size=10 * MiB)
        assert upload.sign_batch([1, 2]).status_code == 200
        assert [upload.sign_part(1).status_code, upload.sign_part(2).status_code] == [200, 200]
        refused = upload.sign_part(1)
        assert other.sign_batch([1, 2]).status_code == 200  # another upload has its own budget
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 3600


def test_routes_that_call_s3_share_the_storage_budget(
    app_env: dict[str, str],
) -> None:
    """Listing, playback, delete, list parts, complete and abort each spend one unit of the storage budget."""
    with signed_in(defaults(app_env, SOUNDPOST_STORAGE_RATE_LIMIT="3/minute")) as alice:
        upload = Multipart.create(alice, "s.wav", "audio/wav")
        answers = [
            alice.get("/api/uploads"),
            upload.list_parts(),
            alice.get("/api/uploads/0000000000000aaaaaaaaaaaa/url"),
            alice.get("/api/uploads"),
            upload.abort(),
        ]
        presigned = alice.post(
            "/api/upload/presigned-url",
            json={"filename": "a.wav", "contentType": "audio/wav"},
            headers=uppy.same_origin(alice),
        )
    assert [a.status_code for a in answers] == [200, 200, 404, 429, 429]
    assert answers[3].json()["error"]["code"] == "rate_limited" and answers[3].headers["retry-after"]
    assert presigned.status_code == 200  # a budget of its own


def test_confirm_has_a_budget_of_its_own(
    app_env: dict[str, str],
) -> None:
    """Confirm reads and parses the stored file, so it is counted apart from the cheaper calls."""
    with signed_in(defaults(app_env, SOUNDPOST_CONFIRM_RATE_LIMIT="2/minute")) as alice:
        path = "/api/uploads/0000000000000aaaaaaaaaaaa/confirm"
        answers = [alice.post(path, headers=uppy.same_origin(alice)) for _ in range(3)]
        listed = alice.get("/api/uploads")
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert listed.status_code == 200


@pytest.mark.parametrize("budget", BUDGETS, ids=[b.name for b in BUDGETS])
def test_each_budget_setting_is_validated_at_start_up(app_env: dict[str, str], budget) -> None:  # type: ignore[no-untyped-def]
    """A malformed rate stops start-up naming the setting."""
    from service.settings import SettingsError, load_settings

    env = {**app_env, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1:8000", f"SOUNDPOST_{budget.setting}": "lots"}
    with pytest.raises(SettingsError, match=f"SOUNDPOST_{budget.setting} must look like"):
        load_settings(env)
