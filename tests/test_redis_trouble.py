"""Sign-outs and budgets that hold through Redis trouble: restarted empty, down, or frozen."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.http.health import DEADLINE
from tests.conftest import serve_app
from tests.support.flows import sign_in
from tests.support.redis import RedisServer, redis_server

PRESIGN = {"filename": "a.wav", "contentType": "audio/wav"}


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@contextlib.contextmanager
def browser(url: str, cookie: str | None = None, user: str | None = None) -> Iterator[httpx.Client]:
    """A browser on one replica: signed in as ``user``, or holding a copy of a session cookie."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        if cookie is not None:
            client.cookies.set("soundpost_session", cookie)
        if user is not None:
            assert sign_in(client, "fake", user).status_code == 303
        yield client


def me(url: str, cookie: str) -> int:
    with browser(url, cookie) as client:
        return client.get("/api/me").status_code


def settles(url: str, cookie: str, expected: int, seconds: float = 15.0) -> list[int]:
    """Every /api/me status until it is ``expected`` (or the time is up): the path it took there."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while not seen or (seen[-1] != expected and time.monotonic() < deadline):
        seen.append(me(url, cookie))
        if seen[-1] != expected:
            time.sleep(0.1)
    return seen


def ready_again(url: str, seconds: float = 15.0) -> None:
    """Wait until the replica reports its revocations check "ok" (reconnected, read, published)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=10).json()["checks"].get("revocations") == "ok":
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not follow Redis again within {seconds} s")


def test_sign_outs_survive_redis_restarted_empty_on_every_replica_old_and_new(
    app_env: dict[str, str], redis: RedisServer
) -> None:
    """Sign-outs (one session, and "everywhere") made before Redis lost its data are refused by
    the replicas that saw them and by a replica started afterwards, which never accepts them meanwhile."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
    with serve_app(env) as one, serve_app(env) as two:
        with contextlib.ExitStack() as stack:
            laptop, bob_1, bob_2, phone = (
                stack.enter_context(browser(one, user=user)) for user in ("alice", "bob", "bob", "alice")
            )
            revoked = [c.cookies["soundpost_session"] for c in (laptop, bob_1, bob_2)]
            kept = phone.cookies["soundpost_session"]
            assert laptop.post("/auth/logout").status_code == 204
            assert bob_1.post("/auth/logout?everywhere=true").status_code == 204
        for cookie in revoked:
            assert settles(two, cookie, 401)[-1] == 401

        redis.stop()
        redis.start()  # empty: no persistence, as in the issue
        ready_again(one)
        ready_again(two)
        with serve_app(env) as three:
            for url in (one, two, three):
                for cookie in revoked:
                    path = settles(url, cookie, 401)
                    assert path[-1] == 401 and 200 not in path, (url, path)
            assert settles(three, kept, 200)[-1] == 200  # a session never signed out works again


def test_a_stream_deleted_under_the_replicas_is_published_again(
    app_env: dict[str, str], redis: RedisServer
) -> None:
    """The stream alone lost (deleted, or evicted without noeviction): the replica that holds the sign-out
    publishes it again, so a replica started afterwards refuses the session."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
    with serve_app(env) as one, browser(one, user="alice") as alice:
        cookie = alice.cookies["soundpost_session"]
        assert alice.post("/auth/logout").status_code == 204
        assert redis.command("DEL", "soundpost:revocations") == "1"
        deadline = time.monotonic() + 15
        while redis.command("XLEN", "soundpost:revocations") == "0" and time.monotonic() < deadline:
            time.sleep(0.1)
        with serve_app(env) as late:
            assert me(late, cookie) == 401


def test_a_sign_out_during_an_outage_keeps_the_cookie_and_holds_everywhere_once_redis_is_back(
    app_env: dict[str, str], redis: RedisServer
) -> None:
    """503 keeps the cookie for a retry; once Redis answers, the other replica refuses the session
    and the retry answers 204."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
    with serve_app(env) as one, serve_app(env) as two, browser(one, user="alice") as alice:
        cookie = alice.cookies["soundpost_session"]
        assert me(two, cookie) == 200
        redis.stop()
        answer = alice.post("/auth/logout")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "revocation_unavailable"
        assert "set-cookie" not in answer.headers  # the browser keeps its cookie to sign out again
        assert alice.cookies["soundpost_session"] == cookie
        assert alice.get("/api/me").status_code == 401  # this replica refuses it at once

        redis.start()
        assert settles(two, cookie, 401)[-1] == 401  # published once Redis answered, without a retry
        again = alice.post("/auth/logout")
        assert again.status_code == 204
        assert "soundpost_session=null" in again.headers["set-cookie"]


def test_a_replica_started_during_an_outage_refuses_sessions_until_it_has_read_the_sign_outs(
    app_env: dict[str, str], redis: RedisServer
) -> None:
    """503 revocations_unavailable for every session (never 200 for a signed-out one) until Redis answers."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
    with serve_app(env) as one, browser(one, user="alice") as alice, browser(one, user="bob") as bob:
        signed_out, kept = alice.cookies["soundpost_session"], bob.cookies["soundpost_session"]
        assert alice.post("/auth/logout").status_code == 204
        redis.stop()
        with serve_app(env) as late:
            for cookie in (signed_out, kept):
                with browser(late, cookie) as client:
                    answer = client.get("/api/me")
                    assert answer.status_code == 503
                    assert answer.json()["error"]["code"] == "revocations_unavailable"
            ready = httpx.get(f"{late}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["checks"]["revocations"].startswith(
                "unreachable"
            )
            redis.start()
            path = settles(late, signed_out, 401)
            assert path[-1] == 401 and 200 not in path, path
            assert settles(late, kept, 200)[-1] == 200
            ready_again(late)


def test_a_frozen_redis_costs_requests_seconds_not_a_hang(
    app_env: dict[str, str], redis: RedisServer
) -> None:
    """SIGSTOP: presign, listing and sign-out answer 503 with their codes, /me still answers, /readyz says why.

    Budgets are exact here (no leases), so every presign and listing needs Redis.
    """
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url, "SOUNDPOST_REDIS_LEASE_PERCENT": "0"}
    with serve_app(env) as url, browser(url, user="alice") as alice, browser(url, user="bob") as bob:
        assert alice.post("/api/upload/presigned-url", json=PRESIGN).status_code == 200
        redis.freeze()
        try:
            presign, presign_took = timed(lambda: alice.post("/api/upload/presigned-url", json=PRESIGN))
            listing, listing_took = timed(lambda: alice.get("/api/uploads"))
            known, known_took = timed(lambda: alice.get("/api/me"))
            out, out_took = timed(lambda: bob.post("/auth/logout"))
            ready, ready_took = timed(lambda: httpx.get(f"{url}/readyz", timeout=30))
        finally:
            redis.thaw()
        took = {"presign": presign_took, "listing": listing_took, "me": known_took, "logout": out_took}
        # Bounds that prove nothing hangs: each Redis call gives up after a second (measured: 1.0 s a request;
        # coredis's default retries made it 3 to 5 s), with room for a loaded machine.
        assert all(seconds < 2.5 for seconds in took.values()), took
        assert ready_took < DEADLINE + 2, ready_took
        assert (presign.status_code, presign.json()["error"]["code"]) == (503, "rate_limiter_unavailable")
        assert (listing.status_code, listing.json()["error"]["code"]) == (503, "rate_limiter_unavailable")
        assert known.status_code == 200  # revocations are read from memory: no Redis on the request path
        assert (out.status_code, out.json()["error"]["code"]) == (503, "revocation_unavailable")
        assert ready.status_code == 503
        assert ready.json()["checks"]["revocations"].startswith("unreachable")
        assert ready.json()["checks"]["budgets"].startswith("unreachable")
        ready_again(url)
        assert alice.post("/api/upload/presigned-url", json=PRESIGN).status_code == 200
        assert bob.post("/auth/logout").status_code == 204


def timed(request: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = request()
    return answer, time.monotonic() - started


def test_a_rate_limiter_that_cannot_reach_redis_logs_at_warning(
    app_env: dict[str, str], redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator hears which setting to look at."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis.url}
    with serve_app(env) as url, browser(url, user="alice") as alice:
        redis.stop()
        with caplog.at_level("WARNING", logger="soundpost.ratelimit"):
            assert alice.post("/api/upload/presigned-url", json=PRESIGN).status_code == 503
        redis.start()
    assert any(
        r.levelname == "WARNING" and "SOUNDPOST_REDIS_URL" in r.getMessage() for r in caplog.records
    ), caplog.text
