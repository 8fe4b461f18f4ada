"""The reservation ledger: the same rules in this process and in Redis (one Lua script per step)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from service.errors import ApiError
from service.limits.connection import open_connection
from service.limits.reservations import Amount, MemoryReservations, Reservations, Verdict
from service.limits.shared_reservations import SharedReservations
from service.settings import load_settings
from tests.support.settings import MINIMAL_SETTINGS


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Ledgers:
    """Ledgers with a given quota, pending cap and TTL, on one fake clock, in memory or in Redis."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self.clock = Clock()
        self.made: list[Reservations] = []

    def __call__(self, quota: int | None = 1000, pending: int = 3, ttl: int = 600) -> Reservations:
        extra = {"SOUNDPOST_REDIS_URL": self.redis_url} if self.redis_url else {}
        settings = dataclasses.replace(
            load_settings({**MINIMAL_SETTINGS, **extra}),
            user_quota_bytes=quota,
            max_pending_uploads=pending,
            reservation_ttl=ttl,
        )
        one: Reservations = (
            SharedReservations(settings, open_connection(self.redis_url), self.clock)
            if self.redis_url
            else MemoryReservations(settings, self.clock)
        )
        self.made.append(one)
        return one

    def run(self, scenario: Callable[[Ledgers], Awaitable[None]]) -> None:
        async def main() -> None:
            try:
                await scenario(self)
            finally:
                for one in self.made:
                    await one.close()

        asyncio.run(main())


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.peers)])
def ledgers(request: pytest.FixtureRequest) -> Ledgers:
    return Ledgers(request.getfixturevalue("redis_url") if request.param == "redis" else None)


def library(total: int) -> Callable[[], Awaitable[Amount]]:
    async def count() -> Amount:
        return Amount(total)

    return count


async def refusal(ledger: Reservations, owner: str, upload_id: str, declared: int | None) -> str | None:
    try:
        await ledger.admit(owner, upload_id, declared)
    except ApiError as error:
        return error.code
    return None


def test_reservations_fill_the_quota_exactly_and_users_are_separate(ledgers: Ledgers) -> None:
    """Declared sizes are held until they would pass the quota; bob's room is his own."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=10)
        assert await refusal(one, "alice", "a1", 400) is None
        assert await refusal(one, "alice", "a2", 600) is None
        assert await refusal(one, "alice", "a3", 1) == "quota_exceeded"
        assert await refusal(one, "alice", "a4", None) == "quota_exceeded"  # no room at all is left
        assert await refusal(one, "bob", "b1", 1000) is None

    ledgers.run(scenario)


def test_an_undeclared_size_needs_any_room_and_promotion_holds_the_line(ledgers: Ledgers) -> None:
    """Without a size presign admits while there is room; commit refuses what would not fit."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=10)
        assert await refusal(one, "alice", "a1", None) is None
        assert await refusal(one, "alice", "a2", None) is None
        assert await one.settle("alice", "a1", Amount(700), 60, library(0)) is Verdict.OK
        assert await one.settle("alice", "a2", Amount(400), 60, library(0)) is Verdict.OVER_BYTES
        assert await one.settle("alice", "a3", Amount(300), 60, library(0)) is Verdict.OK  # exactly full
        assert await refusal(one, "alice", "a4", None) == "quota_exceeded"

    ledgers.run(scenario)


def test_a_commit_counts_once_and_respects_other_reservations(ledgers: Ledgers) -> None:
    """Committing an id twice counts it once; another upload's reservation is not given away."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=10)
        assert await refusal(one, "alice", "held", 600) is None
        assert await one.settle("alice", "x", Amount(400), 60, library(0)) is Verdict.OK
        assert await one.settle("alice", "x", Amount(400), 60, library(0)) is Verdict.OK
        assert await one.settle("alice", "y", Amount(1), 60, library(0)) is Verdict.OVER_BYTES
        assert await one.settle("alice", "held", Amount(600), 60, library(0)) is Verdict.OK

    ledgers.run(scenario)


def test_the_library_is_counted_when_the_ledger_has_not(ledgers: Ledgers) -> None:
    """A ledger that never saw the user (new, or Redis emptied) counts the library before committing."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=10)
        assert await one.commit("alice", "a1", Amount(100), 60) is Verdict.NEEDS_SEED
        assert await one.settle("alice", "a1", Amount(100), 60, library(950)) is Verdict.OVER_BYTES
        assert await one.settle("alice", "a2", Amount(50), 60, library(950)) is Verdict.OK
        assert await refusal(one, "alice", "a3", None) == "quota_exceeded"

    ledgers.run(scenario)


def test_pending_slots_are_capped_and_given_back(ledgers: Ledgers) -> None:
    """At SOUNDPOST_MAX_PENDING_UPLOADS presign says 429; a promotion or a release frees a slot."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=None, pending=2)
        assert await refusal(one, "alice", "a1", 10) is None
        assert await refusal(one, "alice", "a1", 10) is None  # the same id again takes no second slot
        assert await refusal(one, "alice", "a2", 10) is None
        with pytest.raises(ApiError) as caught:
            await one.admit("alice", "a3", 10)
        assert (caught.value.status, caught.value.code) == (429, "too_many_pending_uploads")
        assert caught.value.headers == {"Retry-After": "30"}
        assert await one.settle("alice", "a1", Amount(10), 60, library(0)) is Verdict.OK
        assert await refusal(one, "alice", "a3", 10) is None
        await one.release("alice", "a2")
        assert await refusal(one, "alice", "a4", 10) is None
        assert await refusal(one, "alice", "a5", 10) == "too_many_pending_uploads"

    ledgers.run(scenario)


def test_a_cap_of_zero_is_no_cap_and_without_a_quota_the_ledger_is_never_asked(ledgers: Ledgers) -> None:
    """MAX_PENDING_UPLOADS=0 lifts the cap; with no quota either, presign and promotion record nothing."""

    async def scenario(ledger: Ledgers) -> None:
        capped_by_quota = ledger(quota=100, pending=0)
        for n in range(5):
            assert await refusal(capped_by_quota, "alice", f"q{n}", 20) is None
        assert await refusal(capped_by_quota, "alice", "q5", 20) == "quota_exceeded"
        free = ledger(quota=None, pending=0)
        for n in range(100):
            assert await refusal(free, "alice", f"f{n}", 10**9) is None
        assert await free.settle("alice", "f0", Amount(10**9), 60, library(0)) is Verdict.OK
        assert await free.used("alice") is None  # nothing was recorded

    ledgers.run(scenario)


def test_an_abandoned_reservation_expires(ledgers: Ledgers) -> None:
    """After SOUNDPOST_RESERVATION_TTL its bytes and its slot are free again."""

    async def scenario(ledger: Ledgers) -> None:
        clock = ledger.clock
        one = ledger(quota=1000, pending=1, ttl=60)
        assert await refusal(one, "alice", "a1", 1000) is None
        assert await refusal(one, "alice", "a2", 1) == "too_many_pending_uploads"
        clock.now += 61
        assert await refusal(one, "alice", "a2", 1000) is None

    ledgers.run(scenario)


def test_release_and_delete_give_room_back(ledgers: Ledgers) -> None:
    """A copy that did not happen gives its bytes back, and so does a deleted library file."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=10)
        assert await one.settle("alice", "a1", Amount(600), 60, library(0)) is Verdict.OK
        await one.release("alice", "a1")
        assert await one.settle("alice", "a2", Amount(1000), 60, library(0)) is Verdict.OK
        await one.copied("alice", "a2", 60)
        await one.release("alice", "a2")  # copied: a late release of it changes nothing
        assert await refusal(one, "alice", "a3", 1) == "quota_exceeded"
        await one.removed("alice", Amount(400))
        assert await refusal(one, "alice", "a3", 400) is None

    ledgers.run(scenario)


def test_a_recount_applies_only_when_nothing_moved_during_its_listing(ledgers: Ledgers) -> None:
    """The sweeper's total replaces the count unless a commit or a copy in flight could be missing from it."""

    async def scenario(ledger: Ledgers) -> None:
        clock = ledger.clock
        one = ledger(quota=1000, pending=10)
        assert await one.settle("alice", "a1", Amount(500), 60, library(0)) is Verdict.OK
        assert not await one.recount("alice", 0, since=clock.now + 1)  # a copy is in flight
        await one.copied("alice", "a1", 60)
        assert not await one.recount("alice", 0, since=clock.now)  # it moved while the LIST ran
        clock.now += 10
        assert await one.recount("alice", 100, since=clock.now)
        assert await refusal(one, "alice", "a2", 900) is None
        assert not await one.recount("nobody", 5, since=clock.now)  # never counted: promotion seeds it

    ledgers.run(scenario)


def test_without_a_quota_any_size_is_admitted(ledgers: Ledgers) -> None:
    """Unset SOUNDPOST_USER_QUOTA_BYTES means unlimited: nothing is counted or refused for size."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=None, pending=10)
        assert await refusal(one, "alice", "a1", 10**12) is None
        assert await one.settle("alice", "a1", Amount(10**12), 60, library(10**15)) is Verdict.OK

    ledgers.run(scenario)


def test_concurrent_reservations_never_overshoot(ledgers: Ledgers) -> None:
    """Sixteen presigns at once for 200 of 1000 bytes: exactly five are held."""

    async def scenario(ledger: Ledgers) -> None:
        one = ledger(quota=1000, pending=16)
        codes = await asyncio.gather(*(refusal(one, "alice", f"u{i}", 200) for i in range(16)))
        assert codes.count(None) == 5
        assert codes.count("quota_exceeded") == 11

    ledgers.run(scenario)


def test_expired_reservations_free_their_room_and_never_pile_up(ledgers: Ledgers) -> None:
    """Reservations that lapsed count for nothing, and an account keeps few of them, with a cap or without."""

    async def scenario(ledger: Ledgers) -> None:
        clock = ledger.clock
        for pending, quota in ((0, 10**12), (50, None), (50, 10**12)):
            one = ledger(quota=quota, pending=pending, ttl=10)
            owner = f"owner-{pending}-{quota}"
            for n in range(400):  # one a second for 400 s: ten or so are ever alive at once
                assert await refusal(one, owner, f"u{n}", 1000) is None
                clock.now += 1
            if isinstance(one, SharedReservations):
                fields = await one.redis.hlen(f"soundpost:usage:{owner}")
                assert fields <= 30, fields  # the live ten, at most 16 lapsed, the account's own fields
        capped = ledger(quota=3000, pending=3, ttl=10)
        for n in range(3):
            assert await refusal(capped, "carol", f"c{n}", 1000) is None
        assert await refusal(capped, "carol", "c3", 1) == "too_many_pending_uploads"
        clock.now += 11
        for n in range(4, 7):  # the lapsed three free both the slots and the bytes
            assert await refusal(capped, "carol", f"c{n}", 1000) is None
        assert await refusal(capped, "carol", "c7", 1) == "too_many_pending_uploads"

    ledgers.run(scenario)
