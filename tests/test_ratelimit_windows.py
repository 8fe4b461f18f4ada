"""The in-memory limiter's promise, on a clock the test moves: never more than N hits in any window."""

from __future__ import annotations

import asyncio

import limits

from service.limits.windows import MemoryWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def windows(rate: str) -> tuple[MemoryWindows, Clock]:
    clock = Clock()
    return MemoryWindows(limits.parse_many(rate), clock=clock), clock


def hit(limiter: MemoryWindows, user: str = "alice") -> int | None:
    return asyncio.run(limiter.hit(user))


def test_n_hits_pass_and_the_next_waits_until_the_oldest_leaves_the_window() -> None:
    limiter, clock = windows("3/minute")
    for _ in range(3):
        assert hit(limiter) is None
        clock.now += 10
    assert hit(limiter) == 30  # the first hit, at 1000, leaves the window at 1060; now is 1030
    clock.now = 1059.5
    assert hit(limiter) == 1
    clock.now = 1060.0
    assert hit(limiter) is None


def test_no_sixty_second_window_ever_holds_more_than_the_budget() -> None:
    limiter, clock = windows("5/minute")
    allowed: list[float] = []
    for step in range(600):  # a hit every 0.7 s for 7 minutes
        clock.now = 1000.0 + step * 0.7
        if hit(limiter) is None:
            allowed.append(clock.now)
    assert all(sum(1 for t in allowed if start - 60 < t <= start) <= 5 for start in allowed)
    assert len(allowed) >= 5 * 7  # and the budget is actually usable, not just refused


def test_a_refused_hit_spends_nothing() -> None:
    limiter, clock = windows("2/minute")
    assert [hit(limiter), hit(limiter)] == [None, None]
    for _ in range(50):
        assert hit(limiter) is not None
    clock.now += 60
    assert [hit(limiter), hit(limiter)] == [None, None]


def test_every_rate_applies_and_a_hit_refused_by_one_spends_none_of_the_others() -> None:
    limiter, clock = windows("2/second;3/minute")
    assert [hit(limiter), hit(limiter)] == [None, None]
    assert hit(limiter) == 1  # the per-second budget
    clock.now += 1
    assert hit(limiter) is None
    clock.now += 1
    assert hit(limiter) == 58  # now the per-minute budget: the first hit leaves at 1060, now is 1002
    clock.now = 1060.0
    assert hit(limiter) is None


def test_users_do_not_share_a_budget() -> None:
    limiter, _ = windows("1/minute")
    assert hit(limiter, "alice") is None
    assert hit(limiter, "alice") is not None
    assert hit(limiter, "bob") is None


def test_users_idle_for_longer_than_the_longest_window_are_forgotten() -> None:
    limiter, clock = windows("1/second;10/hour")
    hit(limiter, "alice")
    clock.now += 1800
    hit(limiter, "bob")
    clock.now += 1801  # alice is idle for more than an hour, bob for half an hour
    hit(limiter, "carol")
    assert set(limiter.windows) == {"bob", "carol"}


def test_memory_holds_the_hits_inside_the_window_not_the_whole_budget() -> None:
    limiter, clock = windows("1000000/second")
    for _ in range(5000):
        clock.now += 0.001  # 1000 hits a second against a budget of a million
        assert hit(limiter) is None
    assert len(limiter.windows["alice"][0]) <= 1001


def test_a_hit_of_several_units_fits_whole_or_not_at_all() -> None:
    """A batch of signatures costs one unit each; one that does not fit spends nothing and says when it will."""
    limiter, clock = windows("10/minute")
    assert asyncio.run(limiter.hit("alice", cost=6)) is None
    clock.now += 20
    assert asyncio.run(limiter.hit("alice", cost=3)) is None
    assert asyncio.run(limiter.hit("alice", cost=2)) == 40  # the first six leave at 1060; now is 1020
    assert asyncio.run(limiter.hit("alice", cost=1)) is None
    assert asyncio.run(limiter.hit("alice", cost=11)) == 60  # never fits: a whole window


def test_scale_multiplies_the_budget_for_that_key() -> None:
    """The parts budget is per part an upload needs: scale 3 makes 2/hour six signatures."""
    limiter, _ = windows("2/hour")
    assert asyncio.run(limiter.hit("upload", cost=6, scale=3)) is None
    assert asyncio.run(limiter.hit("upload", cost=1, scale=3)) is not None
    assert asyncio.run(limiter.hit("another", cost=2, scale=1)) is None
