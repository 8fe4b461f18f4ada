"""Per-user rate limit on the routes that issue signatures: at most N in any window.

In memory by default (each process keeps its own budget), with ``MemoryWindows``
below; with ``SOUNDPOST_REDIS_URL`` every replica draws from one budget in Redis,
through the ``limits`` library's moving window. A signed-out request is not counted
here: the route answers it with 401 anyway.

Why not ``limits``' own memory storage: it is on the presign hot path, and it
starts an expiry task that hops to a thread (``asyncio.to_thread``) on almost
every hit, which cost more CPU than signing and stretched the tail latency.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import limits
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request

from service.auth import current_user
from service.errors import ApiError
from service.resources import resources
from service.settings import Settings


class Limiter(Protocol):
    async def hit(self, user_id: str) -> int | None:
        """Spend one unit of the user's budget; None if allowed, else seconds until it refills."""

    def close(self) -> None: ...


class MemoryWindows:
    """Each user's hit times inside each rate's window, in this process: a hit is allowed
    while the window holds fewer than N, so no window ever holds more than N.

    A refused hit spends nothing. Users idle for longer than the longest window are
    forgotten once a minute, so memory follows the active users only.
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

    async def hit(self, user_id: str) -> int | None:
        now = self.clock()
        if now >= self.next_sweep:
            self.sweep(now)
        windows = self.windows.get(user_id)
        if windows is None:
            windows = self.windows[user_id] = [deque() for _ in self.rates]
        for (amount, seconds), window in zip(self.rates, windows, strict=False):
            while window and window[0] <= now - seconds:
                window.popleft()  # memory follows the hits inside the window, not the budget
            if len(window) >= amount:
                return max(1, math.ceil(window[0] + seconds - now))
        for window in windows:
            window.append(now)
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


@dataclass
class SharedWindows:
    """The same budget kept in Redis by ``limits``, so every replica draws from it."""

    limiter: MovingWindowRateLimiter
    storage: Storage
    rates: list[limits.RateLimitItem]

    async def hit(self, user_id: str) -> int | None:
        """Spend one unit of the user's budget; None if allowed, else seconds until it refills."""
        for rate in self.rates:
            if not await self.limiter.hit(rate, "sign", user_id):
                stats = await self.limiter.get_window_stats(rate, "sign", user_id)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    def close(self) -> None:
        """Drop Redis connections (limits has no public close; coredis keeps a pool)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


def open_limiter(settings: Settings) -> Limiter:
    rates = limits.parse_many(settings.rate_limit)
    if settings.redis_url is None:
        return MemoryWindows(rates)
    storage = storage_from_string(f"async+{settings.redis_url}", wrap_exceptions=True)
    assert isinstance(storage, Storage)  # the async+ scheme gives an asyncio storage
    return SharedWindows(MovingWindowRateLimiter(storage), storage, rates)


async def enforce(request: Request) -> None:
    user = current_user(request)
    if user is None:
        return
    limiter = resources(request)["limiter"]
    try:
        wait = await limiter.hit(user.user_id)
    except limits.errors.StorageError as exc:
        raise ApiError(
            503,
            "rate_limiter_unavailable",
            "The rate limiter cannot be reached right now.",
            headers={"Retry-After": "5"},
        ) from exc
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many signing requests; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
