"""Per-user rate limit on the routes that issue signatures, through the ``limits`` library.

In memory by default (each process keeps its own budget); with
``SOUNDPOST_REDIS_URL`` every replica draws from one budget in Redis. A signed-out
request is not counted here: the route answers it with 401 anyway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
from limits.aio.storage import MemoryStorage, Storage
from limits.storage import storage_from_string
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from service.auth import current_user
from service.errors import ApiError
from service.settings import Settings


@dataclass
class Limiter:
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
    storage: Storage = MemoryStorage()
    if settings.redis_url is not None:
        shared = storage_from_string(f"async+{settings.redis_url}", wrap_exceptions=True)
        assert isinstance(shared, Storage)  # the async+ scheme gives an asyncio storage
        storage = shared
    return Limiter(MovingWindowRateLimiter(storage), storage, limits.parse_many(settings.rate_limit))


async def enforce(request: Request) -> None:
    user = current_user(request)
    if user is None:
        return
    limiter: Limiter = request.app.state.limiter
    try:
        wait = await limiter.hit(user.user_id)
    except limits.errors.StorageError as exc:
        raise ApiError(
            503, "rate_limiter_unavailable", "The rate limiter cannot be reached right now.",
            headers={"Retry-After": "5"},
        ) from exc
    if wait is not None:
        raise ApiError(
            429, "rate_limited", f"Too many signing requests; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
