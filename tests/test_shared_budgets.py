"""Budgets shared through Redis: one round trip per grant whatever the windows, and the lease bound held.

The bound (``service.limits.shared``): in any window of a rate, replicas together
allow at most its amount plus the lease slack of each replica. Each
``SharedWindows`` here stands for one replica; they share one real redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import coredis
import httpx
import limits
import pytest

from service.limits.connection import open_connection
from service.limits.shared import SharedWindows, open_shared
from service.limits.shared_reservations import SharedReservations
from service.settings import load_settings
from tests.conftest import serve_app
from tests.support.flows import sign_in
from tests.support.redis import RedisServer, redis_server
from tests.support.settings import MINIMAL_SETTINGS

PRESIGN = "/api/upload/presigned-url"
BODY = {"filename": "a.wav", "contentType": "audio/wav"}


def replica(redis_url: str, rate: str, lease_percent: int = 0) -> SharedWindows:
    return open_shared(open_connection(redis_url), {"uploads": limits.parse_many(rate)}, lease_percent)[
        "uploads"
    ]


@contextlib.asynccontextmanager
async def command_counts(redis_url: str) -> AsyncIterator[dict[str, int]]:
    """Calls per command inside the block, as Redis counts them (INFO commandstats, reset on entry).

    A script's own commands are counted too, under their names, beside the one EVALSHA.
    """
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    counts: dict[str, int] = {}
    try:
        await client.config_resetstat()
        yield counts
        stats = await client.info("commandstats")
    finally:
        client.connection_pool.disconnect()
    for name, value in stats.items():
        command = name.removeprefix("cmdstat_")
        if command not in ("info", "config|resetstat"):
            counts[command] = int(cast("dict[str, int]", value)["calls"])


def test_a_rate_of_three_windows_spends_one_round_trip_per_hit(redis_url: str) -> None:
    """Ten hits of ``10/second;300/minute;1000/hour`` without leases: ten EVALSHAs and no other command."""

    async def run() -> dict[str, int]:
        limiter = replica(redis_url, "10/second;300/minute;1000/hour")
        try:
            assert await limiter.hit("warm-up") is None  # loads the script and opens the connection
            async with command_counts(redis_url) as counts:
                assert [await limiter.hit("alice") for _ in range(10)] == [None] * 10
            return counts
        finally:
            limiter.close()

    counts = asyncio.run(run())
    assert counts.pop("evalsha") == 10
    # the rest ran inside the scripts: each reads the clock once and records one grant
    assert counts.pop("time") == counts.pop("zadd") == counts.pop("pexpire") == 10
    assert set(counts) <= {"zcount", "zremrangebyrank", "exists", "zrange", "zcard"}


def test_a_refusal_costs_one_round_trip_then_none_until_the_budget_refills(redis_url: str) -> None:
    """The refused hit asks Redis once; hits refused again before its wait are answered here."""

    async def run() -> tuple[list[int | None], dict[str, int]]:
        limiter = replica(redis_url, "2/minute;100/hour")
        try:
            assert [await limiter.hit("alice"), await limiter.hit("alice")] == [None, None]
            async with command_counts(redis_url) as counts:
                refused = [await limiter.hit("alice") for _ in range(20)]
            return refused, counts
        finally:
            limiter.close()

    refused, counts = asyncio.run(run())
    assert all(wait is not None and 1 <= wait <= 60 for wait in refused)
    assert counts["evalsha"] == 1
    assert "zadd" not in counts  # the refusal recorded nothing


def test_a_burst_from_one_user_on_one_replica_shares_one_grant(redis_url: str) -> None:
    """Eleven concurrent hits at 100 a minute with 10 % leases: one asks for 1 + 10, the others wait and spend them."""

    async def run() -> tuple[list[int | None], dict[str, int]]:
        limiter = replica(redis_url, "100/minute", lease_percent=10)
        try:
            assert await limiter.hit("warm-up") is None
            async with command_counts(redis_url) as counts:
                answers = await asyncio.gather(*(limiter.hit("alice") for _ in range(11)))
            return answers, counts
        finally:
            limiter.close()

    answers, counts = asyncio.run(run())
    assert answers == [None] * 11
    assert counts["evalsha"] == 1


def test_many_users_hits_in_one_pass_of_the_event_loop_share_one_round_trip(redis_url: str) -> None:
    """Forty users' first hits, all waiting at once, go to Redis as one EVALSHA, each granted on its own."""

    async def run() -> tuple[list[int | None], dict[str, int]]:
        limiter = replica(redis_url, "1/minute")
        try:
            assert await limiter.hit("warm-up") is None
            async with command_counts(redis_url) as counts:
                answers = await asyncio.gather(*(limiter.hit(f"user-{n % 20}") for n in range(40)))
            return answers, counts
        finally:
            limiter.close()

    answers, counts = asyncio.run(run())
    assert answers[:20] == [None] * 20  # each user's first hit
    assert all(wait is not None and 1 <= wait <= 60 for wait in answers[20:])  # and their second, refused
    assert counts["evalsha"] == 1
    assert counts["zadd"] == 20


def test_a_pass_of_presigns_spends_one_round_trip_for_its_grants_and_reservations(redis_url: str) -> None:
    """Twenty users' first presigns at once: their budget grants and ledger reservations go as one EVALSHA."""

    async def run() -> tuple[list[int | None], dict[str, int], list[int]]:
        connection = open_connection(redis_url)
        limiter = open_shared(connection, {"uploads": limits.parse_many("10/minute;100/hour")}, 0)["uploads"]
        settings = dataclasses.replace(
            load_settings({**MINIMAL_SETTINGS, "SOUNDPOST_REDIS_URL": redis_url}), user_quota_bytes=1000
        )
        ledger = SharedReservations(settings, connection)
        users = [f"pass-{n}" for n in range(20)]
        try:
            assert await limiter.hit("warm-up") is None  # loads the script and opens the connection
            async with command_counts(redis_url) as counts:
                answers = await asyncio.gather(
                    *(limiter.hit(user) for user in users),
                    *(ledger.admit(user, f"{user}-upload", 400) for user in users),
                )
            entries = [
                sum(
                    field.startswith(b"e:")
                    for field in await connection.redis.hkeys(f"soundpost:usage:{user}")
                )
                for user in users
            ]
            return answers, counts, entries
        finally:
            await ledger.close()

    answers, counts, entries = asyncio.run(run())
    assert answers == [None] * 40  # every grant given and every reservation admitted
    assert counts["evalsha"] == 1
    assert counts["zadd"] == 20  # one grant recorded per user
    assert entries == [1] * 20  # one reservation held per user


def test_a_burst_after_redis_restarts_empty_is_answered_in_full(tmp_path: Path) -> None:
    """Redis restarted empty (no script): a burst of 1,000 hits, many batches in flight at once, all pass."""

    async def run(server: RedisServer) -> tuple[list[int | BaseException | None], dict[str, int]]:
        limiter = replica(server.url, "10/minute")

        async def hit(n: int) -> int | None:
            if n >= 500:  # half at once (four batches in flight together), half spread over 10 ms
                await asyncio.sleep(n % 50 / 5000)
            return await limiter.hit(f"burst-{n}")

        try:
            assert await limiter.hit("warm-up") is None  # the script loaded, the connection open
            server.stop()
            server.start()  # empty: no script, no budgets
            async with command_counts(server.url) as counts:
                answers = list(await asyncio.gather(*(hit(n) for n in range(1000)), return_exceptions=True))
            return answers, counts
        finally:
            limiter.close()

    with redis_server(tmp_path) as server:
        answers, counts = asyncio.run(run(server))
    assert answers == [None] * 1000
    assert counts.get("script|load", 0) <= 1  # loaded before the burst's batches were sent, at most once


def test_every_window_applies_and_a_refused_hit_spends_nothing(redis_url: str) -> None:
    """``2/second;3/minute``: the third hit waits a second; after it, one more, then the minute refuses."""

    async def run() -> list[int | None]:
        limiter = replica(redis_url, "2/second;3/minute")
        try:
            first = [await limiter.hit("alice") for _ in range(3)]
            await asyncio.sleep(1.05)
            return [*first, await limiter.hit("alice"), await limiter.hit("alice")]
        finally:
            limiter.close()

    first, second, third, fourth, fifth = asyncio.run(run())
    assert (first, second, third, fourth) == (None, None, 1, None)
    assert fifth is not None and 50 <= fifth <= 60


def test_a_batch_fits_whole_or_not_at_all_and_scale_multiplies_the_budget(redis_url: str) -> None:
    """The parts budget's shape: cost several units at once, a budget scaled per upload."""

    async def run() -> list[int | None]:
        limiter = replica(redis_url, "2/hour", lease_percent=50)
        try:
            return [
                await limiter.hit("upload", cost=6, scale=3),
                await limiter.hit("upload", cost=1, scale=3),
                await limiter.hit("other", cost=7, scale=3),
                await limiter.hit("other", cost=2, scale=1),
            ]
        finally:
            limiter.close()

    fits, over, never, fresh = asyncio.run(run())
    assert fits is None and fresh is None
    assert over is not None and never == 3600


def test_without_leases_two_replicas_allow_exactly_the_budget_under_concurrent_load(redis_url: str) -> None:
    """400 concurrent hits from one user, half on each replica, against 50 a minute: exactly 50 pass."""

    async def run() -> list[int | None]:
        one, two = replica(redis_url, "50/minute"), replica(redis_url, "50/minute")
        try:
            return await asyncio.gather(*((one if i % 2 else two).hit("alice") for i in range(400)))
        finally:
            one.close()
            two.close()

    answers = asyncio.run(run())
    assert sum(answer is None for answer in answers) == 50


def test_with_leases_a_replica_never_holds_more_than_its_slack_under_concurrent_load(redis_url: str) -> None:
    """Three seconds of concurrent hits from one user on two replicas, 20 a second, leases of a fifth.

    After every hit each replica holds at most its slack (4 units) unspent; no second
    holds more than 20 + 2 × 4 allowed hits; and the budget stays usable.
    """

    async def run() -> tuple[list[float], list[int]]:
        replicas = [replica(redis_url, "20/second", lease_percent=20) for _ in range(2)]
        allowed: list[float] = []
        held: list[int] = []
        stop = time.monotonic() + 3.0

        async def user(limiter: SharedWindows) -> None:
            while time.monotonic() < stop:
                if await limiter.hit("alice") is None:
                    allowed.append(time.monotonic())
                held.append(limiter.leases["alice"].units)
                await asyncio.sleep(0.001)

        try:
            assert all(limiter.slack(1) == 4 for limiter in replicas)
            await asyncio.gather(*(user(limiter) for limiter in replicas for _ in range(8)))
        finally:
            for limiter in replicas:
                limiter.close()
        return allowed, held

    allowed, held = asyncio.run(run())
    assert max(held) <= 4
    # windows a little shorter than a second: a hit is timed here a moment after Redis granted it
    assert max(sum(1 for t in allowed if start <= t < start + 0.95) for start in allowed) <= 20 + 2 * 4
    assert len(allowed) >= 3 * (20 - 2 * 4)


def test_leases_spent_late_overrun_a_window_by_at_most_each_replicas_slack(redis_url: str) -> None:
    """The worst case the bound allows: both replicas lease, keep their slack to the window's end, spend it
    as the next window opens and then spend that window's whole budget; 20 + 2 × 4 at most."""

    async def run() -> list[float]:
        one, two = (replica(redis_url, "20/second", lease_percent=20) for _ in range(2))
        allowed: list[float] = []

        async def spend(limiter: SharedWindows, hits: int) -> None:
            for _ in range(hits):
                if await limiter.hit("alice") is None:
                    allowed.append(time.monotonic())

        try:
            started = time.monotonic()
            await spend(one, 1)  # Redis grants 1 + 4: one holds 4
            await spend(two, 1)  # two holds 4 as well; 10 of the 20 are now spent in Redis
            assert one.leases["alice"].units == two.leases["alice"].units == 4
            await asyncio.sleep(max(0.0, started + 0.9 - time.monotonic()))
            await spend(one, 4)  # the held units, spent at the end of the first window
            await spend(two, 4)
            await asyncio.sleep(max(0.0, started + 1.05 - time.monotonic()))
            await asyncio.gather(spend(one, 30), spend(two, 30))  # the next window: its whole budget
        finally:
            one.close()
            two.close()
        return allowed

    allowed = asyncio.run(run())
    busiest = max(sum(1 for t in allowed if start <= t < start + 0.95) for start in allowed)
    assert busiest <= 20 + 2 * 4


@pytest.fixture
def replicas(app_env: dict[str, str], redis_url: str) -> Iterator[tuple[str, str]]:
    env = {
        **app_env,
        "SOUNDPOST_RATE_LIMIT": "40/minute",
        "SOUNDPOST_REDIS_URL": redis_url,
        "SOUNDPOST_REDIS_LEASE_PERCENT": "25",
    }
    with serve_app(env) as one, serve_app(env) as two:
        yield one, two


def test_two_app_replicas_hold_one_users_budget_under_concurrent_presigns(replicas: tuple[str, str]) -> None:
    """120 concurrent presigns from alice over two replicas, 40 a minute, slack 10 each: 20 to 60 pass, the rest 429."""
    clients = []
    for url in replicas:
        client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        assert sign_in(client, "fake", "alice").status_code == 303
        clients.append(client)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda i: clients[i % 2].post(PRESIGN, json=BODY), range(120)))
    finally:
        for client in clients:
            client.close()
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}
    assert 40 - 2 * 10 <= statuses.count(200) <= 40 + 2 * 10
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
