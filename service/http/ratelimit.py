"""Spending a budget from a route: the 429 (or 503) that says why not, before the endpoint runs.

The counts themselves are kept by ``service.limits.windows`` (in memory, or in Redis shared by replicas).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import limits
from starlette.requests import Request

from service.core.budgets import Budget
from service.errors import ApiError
from service.http.authentication import current_user
from service.resources import resources

logger = logging.getLogger("soundpost.ratelimit")


def _unavailable(exc: Exception) -> ApiError:
    cause = exc.__cause__ or exc
    logger.warning("rate limiter cannot reach Redis (SOUNDPOST_REDIS_URL): %s", type(cause).__name__)
    return ApiError(
        503,
        "rate_limiter_unavailable",
        "The rate limiter cannot be reached right now.",
        headers={"Retry-After": "5"},
    )


def _limited(budget: Budget, wait: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests of this kind ({budget.name}); try again in {wait} s.",
        headers={"Retry-After": str(wait)},
    )


async def spend(request: Request, budget: Budget, key: str, cost: int = 1, scale: int = 1) -> None:
    """Spend ``cost`` units of ``key``'s share of ``budget``, or raise the 429 (or 503) that says why not."""
    limiter = resources(request)["limiters"][budget.name]
    try:
        wait = await limiter.hit(key, cost, scale)
    except limits.errors.StorageError as exc:
        raise _unavailable(exc) from exc
    if wait is not None:
        raise _limited(budget, wait)


def enforcer(budget: Budget) -> Callable[[Request], Awaitable[None]]:
    """What a route with a per-user budget runs first: one unit of the signed-in user's budget.

    ``spend`` inlined: this runs on every presign, and an extra coroutine per request is measurable.
    """
    name = budget.name

    async def enforce(request: Request) -> None:
        user = current_user(request)
        if user is None:
            return
        limiter = resources(request)["limiters"][name]
        try:
            wait = await limiter.hit(user.user_id)
        except limits.errors.StorageError as exc:
            raise _unavailable(exc) from exc
        if wait is not None:
            raise _limited(budget, wait)

    return enforce
