"""The per-process usage cache presign consults: quota and pending uploads, without a call to S3."""

from __future__ import annotations

import dataclasses

import pytest

from service.errors import ApiError
from service.limits.usage import Usage
from service.settings import load_settings
from tests.support.settings import MINIMAL_SETTINGS


def usage(quota: int | None = 1000, pending: int = 3) -> Usage:
    settings = load_settings(MINIMAL_SETTINGS)
    return Usage(dataclasses.replace(settings, user_quota_bytes=quota, max_pending_uploads=pending))


def refusal(cache: Usage, owner: str, declared: int | None) -> str | None:
    try:
        cache.admit(owner, declared)
    except ApiError as error:
        return error.code
    return None


def test_without_a_quota_any_size_is_admitted() -> None:
    """Unset SOUNDPOST_USER_QUOTA_BYTES means unlimited, whatever was counted."""
    cache = usage(quota=None)
    cache.recounted("alice", 10**15)
    assert refusal(cache, "alice", 10**12) is None


@pytest.mark.parametrize(
    ("used", "declared", "code"),
    [
        (0, 1000, None),
        (400, 600, None),
        (400, 601, "quota_exceeded"),
        (999, None, None),
        (1000, None, "quota_exceeded"),
        (1000, 1, "quota_exceeded"),
    ],
)
def test_a_declared_size_must_fit_what_is_left(used: int, declared: int | None, code: str | None) -> None:
    """A declared size must fit exactly; with none declared, any room at all admits the upload."""
    cache = usage()
    cache.recounted("alice", used)
    assert refusal(cache, "alice", declared) == code


def test_promotions_and_deletes_move_the_count_and_users_are_separate() -> None:
    """Promotion adds, delete subtracts (never below zero), and bob's room is his own."""
    cache = usage()
    cache.promoted("alice", 700)
    assert refusal(cache, "alice", 400) == "quota_exceeded"
    assert refusal(cache, "bob", 1000) is None
    cache.removed("alice", 5000)
    assert cache.used("alice") == 0


def test_too_many_pending_uploads_is_429_until_one_settles() -> None:
    """At SOUNDPOST_MAX_PENDING_UPLOADS waiting uploads presign says 429 with Retry-After; a promotion frees a slot."""
    cache = usage(pending=2)
    cache.pending_counted("alice", 2)
    with pytest.raises(ApiError) as caught:
        cache.admit("alice", 10)
    assert (caught.value.status, caught.value.code) == (429, "too_many_pending_uploads")
    assert caught.value.headers == {"Retry-After": "30"}
    cache.settled("alice")
    assert refusal(cache, "alice", 10) is None


def test_a_full_recount_replaces_everything_counted_before() -> None:
    """Users the sweeper did not find hold nothing any more."""
    cache = usage(pending=1)
    cache.promoted("alice", 900)
    cache.pending_counted("carol", 1)
    cache.replace_counts({"bob": 10}, {})
    assert (cache.used("alice"), cache.used("bob")) == (0, 10)
    assert refusal(cache, "carol", 1) is None
