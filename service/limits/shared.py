"""Rate budgets shared by replicas through Redis: one script call per refill, leases spent locally.

Each grant is one ``GRANT`` of ``service.limits.scripts``, whatever the number of
windows a rate has, refused or not, and every grant and reservation that the
requests of one event-loop pass wait for (many users at once, under load) share
one ``EVALSHA`` (``service.limits.connection``). To keep Redis off
most requests a replica may take a *lease*: up to ``slack`` units more than the
hit needs, recorded in Redis as spent at once and then spent here without a round
trip. A refusal is remembered until
Redis said enough refills, so a user hammering a spent budget costs Redis nothing.

The bound: in any window of a rate, all replicas together allow at most the
rate's amount plus ``slack`` per replica. Redis never grants more than the amount
in any window, and a replica holds at most ``slack`` granted-but-unspent units
when a window opens (the refill that made them also spent the hit that asked).
Leases are never returned, so at most ``slack`` units per replica go unspent in a
window instead; with ``slack`` 0 every hit asks Redis and the budget is exact.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import limits
import limits.errors

from service.limits.connection import REDIS_DOWN, Connection


@dataclass(slots=True)
class Lease:
    """What this replica holds of one key's budget: units granted and unspent, and a refusal it remembers."""

    units: int = 0
    expires: float = 0.0
    refused_until: float = 0.0
    refused_least: int = 0
    asking: asyncio.Future[None] | None = None


@dataclass
class SharedWindows:
    """One budget kept in Redis for every replica, spent through local leases of at most ``slack`` units."""

    connection: Connection
    rates: Sequence[limits.RateLimitItem]
    name: str
    lease_percent: int = 0
    clock: Callable[[], float] = time.monotonic
    leases: dict[str, Lease] = field(default_factory=dict)

    SWEEP_EVERY = 60.0

    def __post_init__(self) -> None:
        self.windows = [(int(rate.amount), int(rate.get_expiry()) * 1000) for rate in self.rates]
        self.shortest = min(ms for _, ms in self.windows) / 1000
        self.prefix = f"soundpost:budget:{self.name}:"
        self.words = self.windows_words(1)
        self.unit_slack = self.slack(1)
        self.next_sweep = self.clock() + self.SWEEP_EVERY

    async def reachable(self) -> bool:
        """A PING within the client's timeouts: what readiness asks of the shared budgets."""
        try:
            await self.connection.redis.ping()
        except REDIS_DOWN:
            return False
        return True

    def slack(self, scale: int) -> int:
        """Units a replica may hold unspent: the lease share of the smallest amount among the rate's windows."""
        return min(amount * scale for amount, _ in self.windows) * self.lease_percent // 100

    async def hit(self, key: str, cost: int = 1, scale: int = 1) -> int | None:
        """Spend ``cost`` units of ``key``'s budget; None if allowed, else seconds until it refills."""
        now = self.clock()
        if now >= self.next_sweep:
            self.sweep(now)
        lease = self.leases.get(key)
        if lease is None:
            lease = self.leases[key] = Lease()
        while True:
            if lease.expires <= now:
                lease.units = 0  # granted longer ago than the shortest window: not worth the unfairness
            if lease.units >= cost:
                lease.units -= cost
                return None
            least = cost - lease.units
            if now < lease.refused_until and least >= lease.refused_least:
                return max(1, math.ceil(lease.refused_until - now))
            if lease.asking is None:
                return await self.refill(key, lease, cost, scale)
            await asyncio.shield(lease.asking)  # another hit here is asking Redis: share its answer
            now = self.clock()

    async def refill(self, key: str, lease: Lease, cost: int, scale: int) -> int | None:
        """Ask Redis for what this hit lacks plus up to ``slack`` more, in one script call."""
        slack = self.unit_slack if scale == 1 else self.slack(scale)
        taken, lease.units = lease.units, 0  # this hit's share of what is held: no other hit spends it now
        least = cost - taken
        asking = None
        if slack:  # with no slack, concurrent hits each ask on their own: nothing would be shared
            asking = lease.asking = asyncio.get_running_loop().create_future()
        granted = 0
        try:
            granted, wait_ms = await self.spend(key, least + slack, least, scale)
        finally:
            lease.units += taken + granted - (cost if granted else 0)
            if asking is not None:
                lease.asking = None
                asking.set_result(None)
        now = self.clock()
        if granted:
            lease.expires = now + self.shortest
            return None
        lease.refused_until, lease.refused_least = now + wait_ms / 1000, least
        return max(1, math.ceil(wait_ms / 1000))

    async def spend(self, key: str, want: int, least: int, scale: int) -> tuple[int, int]:
        """This hit's part of the pass's script call: a grant (``service.limits.scripts.GRANT``)."""
        windows = self.words if scale == 1 else self.windows_words(scale)
        try:
            granted, wait_ms = await self.connection.ask(self.prefix + key, f"g {want} {least} {windows}")
        except REDIS_DOWN as exc:
            raise limits.errors.StorageError(exc) from exc
        return int(granted), wait_ms

    def windows_words(self, scale: int) -> str:
        """The windows as a grant's words: their number, then each one's amount and milliseconds."""
        return " ".join([str(len(self.windows)), *(f"{amount * scale} {ms}" for amount, ms in self.windows)])

    def sweep(self, now: float) -> None:
        """Forget keys with nothing held, nothing refused and nothing asked: memory follows active users."""
        idle = [
            key
            for key, lease in self.leases.items()
            if lease.asking is None and lease.expires <= now and lease.refused_until <= now
        ]
        for key in idle:
            del self.leases[key]
        self.next_sweep = now + self.SWEEP_EVERY

    def close(self) -> None:
        """Drop the Redis connections (shared by every budget; disconnecting twice is harmless)."""
        self.connection.close()


def open_shared(
    connection: Connection, rates: dict[str, list[limits.RateLimitItem]], lease_percent: int
) -> dict[str, SharedWindows]:
    """Every budget on one Redis connection."""
    return {name: SharedWindows(connection, items, name, lease_percent) for name, items in rates.items()}
