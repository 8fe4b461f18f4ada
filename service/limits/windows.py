"""The budgets of ``service.core.budgets``, kept: at most N units of each in any window, per user or upload.

In memory by default (each process keeps its own budgets), with ``MemoryWindows``
below; with ``SOUNDPOST_REDIS_URL`` every replica draws from the same budgets in
Redis, through ``service.limits.shared``. A signed-out request is not counted
here: the route answers it with 401 anyway.

Why not ``limits``' own memory storage: it is on the presign hot path, and it
starts an expiry task that hops to a thread (``asyncio.to_thread``) on almost
every hit, which cost more CPU than signing and stretched the tail latency.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import limits

from service.core.budgets import BUDGETS
from service.limits.connection import Connection
from service.limits.shared import open_shared
from service.settings import Settings


class Limiter(Protocol):
    async def hit(self, key: str, cost: int = 1, scale: int = 1) -> int | None:
        """Spend ``cost`` units of ``key``'s budget (its amounts times ``scale``); None if allowed,
        else seconds until enough refills."""

    def close(self) -> None: ...


class MemoryWindows:
    """Each user's hit times inside each rate's window, in this process: a hit is allowed
    while the window holds fewer than N, so no window ever holds more than N.

    A refused hit spends nothing. Keys idle for longer than the longest window are
    forgotten once a minute, so memory follows the active users (and uploads) only.
    """

    SWEEP_EVERY = 60.0

    def __init__(
        self, rates: Sequence[limits.RateLimitItem], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = [(rate.amount, float(rate.get_expiry())) for rate in rates]
        self.longest = max(seconds for _, seconds in self.rates)
        self.clock = clock
        self.windows: dict[str, list[deque[float]]] = {}
        self.next_sweep = clock() + self.SWEEP_EVERY

    async def hit(self, key: str, cost: int = 1, scale: int = 1) -> int | None:
        now = self.clock()
        if now >= self.next_sweep:
            self.sweep(now)
        windows = self.windows.get(key)
        if windows is None:
            windows = self.windows[key] = [deque() for _ in self.rates]
        for (amount, seconds), window in zip(self.rates, windows, strict=False):
            while window and window[0] <= now - seconds:
                window.popleft()  # memory follows the hits inside the window, not the budget
            room = amount * scale - len(window)
            if cost > room:
                # the unit that must leave first for cost units to fit, or a whole window if they never can
                oldest = window[cost - room - 1] if cost <= amount * scale else now
                return max(1, math.ceil(oldest + seconds - now))
        for window in windows:
            if cost == 1:
                window.append(now)
            else:  # one float object shared by all cost entries
                window.extend(itertools.repeat(now, cost))
        return None

    def sweep(self, now: float) -> None:
        idle = [user for user, windows in self.windows.items() if last_hit(windows) <= now - self.longest]
        for user in idle:
            del self.windows[user]
        self.next_sweep = now + self.SWEEP_EVERY

    def close(self) -> None:
        pass


def last_hit(windows: list[deque[float]]) -> float:
    """When the user was last allowed a hit (a refused hit may have trimmed a short window empty)."""
    return max((window[-1] for window in windows if window), default=-math.inf)


Limiters = dict[str, Limiter]


def open_limiters(settings: Settings, connection: Connection | None) -> Limiters:
    """One limiter per budget of ``service.core.budgets``, at the rates the settings give, shared on ``connection``."""
    rates = {budget.name: limits.parse_many(settings.budget_rate(budget)) for budget in BUDGETS}
    if connection is None:
        return {name: MemoryWindows(items) for name, items in rates.items()}
    return dict(open_shared(connection, rates, settings.redis_lease_percent))


def close_limiters(limiters: Limiters) -> None:
    for limiter in limiters.values():
        limiter.close()
