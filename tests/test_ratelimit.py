"""Per-user rate limit on signing routes: in memory by default, shared through Redis by replicas."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import serve_app
from tests.support.flows import sign_in
from tests.support.redis import redis_server
from tests.support.uppy import Multipart

PRESIGN = "/api/upload/presigned-url"
BODY = {"filename": "a.wav", "contentType": "audio/wav"}


def presign(client: httpx.Client) -> httpx.Response:
    return client.post(PRESIGN, json=BODY)


@contextlib.contextmanager
def signed_in(url: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        assert sign_in(client, "fake", user).status_code == 303
        yield client


def test_over_the_budget_is_429_with_retry_after(app_env: dict[str, str]) -> None:
    """The fourth presign within a minute, with a budget of three, is refused with a wait time."""
    with serve_app({**app_env, "SOUNDPOST_RATE_LIMIT": "3/minute"}) as url, signed_in(url, "alice") as alice:
        assert [presign(alice).status_code for _ in range(3)] == [200, 200, 200]
        refused = presign(alice)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_each_user_has_their_own_budget(app_env: dict[str, str]) -> None:
    """One user spending their budget does not slow another down."""
    with (
        serve_app({**app_env, "SOUNDPOST_RATE_LIMIT": "2/minute"}) as url,
        signed_in(url, "alice") as alice,
        signed_in(url, "bob") as bob,
    ):
        assert [presign(alice).status_code for _ in range(3)] == [200, 200, 429]
        assert presign(bob).status_code == 200


def test_signed_out_requests_are_401_and_spend_nothing(app_env: dict[str, str]) -> None:
    """The limit is per user; a request without a user is answered 401 by the route."""
    with (
        serve_app({**app_env, "SOUNDPOST_RATE_LIMIT": "1/minute"}) as url,
        httpx.Client(base_url=url) as anon,
    ):
        assert [presign(anon).status_code for _ in range(3)] == [401, 401, 401]


def test_in_memory_budgets_are_per_process(app_env: dict[str, str]) -> None:
    """Without Redis, two replicas count separately (which is why Redis exists)."""
    env = {**app_env, "SOUNDPOST_RATE_LIMIT": "2/minute"}
    with (
        serve_app(env) as one,
        serve_app(env) as two,
        signed_in(one, "alice") as a1,
        signed_in(two, "alice") as a2,
    ):
        assert [presign(a1).status_code for _ in range(2)] == [200, 200]
        assert presign(a2).status_code == 200


def test_replicas_share_one_budget_through_redis(app_env: dict[str, str], redis_url: str) -> None:
    """Two app processes with the same Redis URL draw from one budget per user."""
    env = {**app_env, "SOUNDPOST_RATE_LIMIT": "3/minute", "SOUNDPOST_REDIS_URL": redis_url}
    with (
        serve_app(env) as one,
        serve_app(env) as two,
        signed_in(one, "alice") as a1,
        signed_in(two, "alice") as a2,
    ):
        assert [presign(a1).status_code for _ in range(2)] == [200, 200]
        assert presign(a2).status_code == 200
        refused = presign(a2)
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert presign(a1).status_code == 429


def test_redis_down_is_a_clear_503_not_a_500(app_env: dict[str, str], tmp_path: Path) -> None:
    """If the shared budget cannot be read, signing stops with a code that says why."""
    with redis_server(tmp_path) as redis:
        env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
        with serve_app(env) as url, signed_in(url, "alice") as alice:
            redis.stop()  # after start-up: a replica that never read the sign-outs refuses sessions first
            answer = presign(alice)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "rate_limiter_unavailable"


def test_replicas_share_an_uploads_part_budget_through_redis(app_env: dict[str, str], redis_url: str) -> None:
    """A 2-part upload at 1 signature per part an hour: two on one replica leave none on the other."""
    env = {**app_env, "SOUNDPOST_PART_RATE_LIMIT": "1/hour", "SOUNDPOST_REDIS_URL": redis_url}
    with (
        serve_app(env) as one,
        serve_app(env) as two,
        signed_in(one, "alice") as a1,
        signed_in(two, "alice") as a2,
    ):
        upload = Multipart.create(a1, "shared.wav", "audio/wav", size=10 * 1024 * 1024)
        assert upload.sign_batch([1, 2]).status_code == 200
        refused = upload.as_seen_by(a2).sign_part(1)
        fresh = Multipart.create(a2, "fresh.wav", "audio/wav", size=10 * 1024 * 1024)
        assert fresh.as_seen_by(a1).sign_batch([1, 2]).status_code == 200
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
