"""Rate budgets shared by replicas through Redis: one script call per refill, leases spent locally.

Each grant is one ``EVALSHA`` of ``SPEND`` below, whatever the number of windows a
rate has, refused or not, and the grants that the requests of one event-loop pass
wait for (many users at once, under load) share that one call. To keep Redis off
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
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, cast

import coredis
import coredis.exceptions
import coredis.typing
import limits
import limits.errors
from coredis.retry import NoRetryPolicy

# One call grants for every hit a replica's event loop gathered in one pass (one key each).
# Each key holds its grants in a sorted set scored by the millisecond each was made; members are
# "total:units", total the key's running count after that grant (zero-padded: grants made in the
# same millisecond sort by it, and no two members are alike), so what a window holds is two
# lookups (the newest total less the total before the window), whatever the budget's size.
# The newest grant older than every window is kept: it is the count before them.
# ARGV, per key: want (units to grant at most), least (at fewest), the number of windows, then
# amount and milliseconds per window. Returns, per key, units granted and 0, or 0 and the
# milliseconds until the least fits. The clock is Redis's own.
SPEND = """
local time = redis.call('TIME')
local clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function spend(key, want, least, windows)
  local now = clock
  local function total_at(rank)
    local member = redis.call('ZRANGE', key, rank, rank)[1]
    local total, units = string.match(member, '^(%d+):(%d+)$')
    return tonumber(total), tonumber(units)
  end
  local longest = 0
  for _, window in ipairs(windows) do longest = math.max(longest, window[2]) end
  local old = redis.call('ZCOUNT', key, '-inf', now - longest)
  if old > 1 then redis.call('ZREMRANGEBYRANK', key, 0, old - 2) end
  local total, start = 0, 0
  if redis.call('EXISTS', key) == 1 then
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    total = tonumber(string.match(newest[1], '^(%d+):'))
    now = math.max(now, tonumber(newest[2]))  -- a clock stepped back must not reorder the grants
    local first, units = total_at(0)
    start = first - units
  end
  local grant, wait = want, 0
  for _, window in ipairs(windows) do
    local amount, span = window[1], window[2]
    local outside = redis.call('ZCOUNT', key, '-inf', now - span)
    local before = start
    if outside > 0 then before = total_at(outside - 1) end
    local room = amount - (total - before)
    if room < least then
      local until_fits = span
      if least <= amount then
        -- the oldest grant inside the window whose leaving frees enough: a binary search by rank
        local target, low, high = before + least - room, outside, redis.call('ZCARD', key) - 1
        while low < high do
          local middle = math.floor((low + high) / 2)
          if total_at(middle) >= target then high = middle else low = middle + 1 end
        end
        until_fits = tonumber(redis.call('ZRANGE', key, low, low, 'WITHSCORES')[2]) + span - now
      end
      wait = math.max(wait, until_fits)
    elseif room < grant then
      grant = room
    end
  end
  if wait > 0 then return 0, wait end
  redis.call('ZADD', key, now, string.format('%016d:%d', total + grant, grant))
  redis.call('PEXPIRE', key, longest)
  return grant, 0
end

local answers, at = {}, 1
for k = 1, #KEYS do
  local want, least, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local windows = {}
  for w = 1, count do
    windows[w] = {tonumber(ARGV[at + 1 + 2 * w]), tonumber(ARGV[at + 2 + 2 * w])}
  end
  at = at + 3 + 2 * count
  answers[2 * k - 1], answers[2 * k] = spend(KEYS[k], want, least, windows)
end
return answers
"""

SPEND_SHA = hashlib.sha1(SPEND.encode()).hexdigest()  # noqa: S324 - the name Redis gives the script, not a secret

REDIS_DOWN = (coredis.exceptions.RedisError, OSError, TimeoutError)


Ask = tuple[str, list[coredis.typing.ValueT], "asyncio.Future[tuple[int, int]]"]


@dataclass
class Connection:
    """The Redis client every budget shares: the hits of one event-loop pass go out as one script call.

    Under load many users' requests wait for grants at once; one EVALSHA for all of
    them costs the client's per-command work once (measured: coredis spends more
    CPU per command than the request it limits). The script is loaded once at a
    time: a burst of NOSCRIPTs on a Redis that has not seen it (just started, or
    restarted) would otherwise each send SCRIPT LOAD, and coredis dropped
    connections under that storm (measured: "connection lost").
    """

    BATCH: ClassVar[int] = 128  # keys per script call at most: Redis runs one script at a time

    redis: coredis.Redis[bytes]
    loading: asyncio.Lock = field(default_factory=asyncio.Lock)
    loads: int = 0
    waiting: list[Ask] = field(default_factory=list)
    sending: set[asyncio.Task[None]] = field(default_factory=set)

    async def spend(self, key: str, args: list[coredis.typing.ValueT]) -> tuple[int, int]:
        """Units granted and milliseconds to wait for one key, asked together with this pass's others."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[int, int]] = loop.create_future()
        self.waiting.append((key, args, answer))
        if len(self.waiting) == 1:
            loop.call_soon(self.flush)
        elif len(self.waiting) >= self.BATCH:
            self.flush()  # the call_soon already scheduled finds an empty list or the next batch
        return await answer

    def flush(self) -> None:
        if not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        task = asyncio.ensure_future(self.send(batch))
        self.sending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self.sending.discard)

    async def send(self, batch: list[Ask]) -> None:
        keys = tuple(key for key, _, _ in batch)
        args = [value for _, values, _ in batch for value in values]
        try:
            replies = cast("list[int]", await self.evalsha(keys, args))
        except BaseException as exc:  # every hit of the batch learns why, the task ends quietly
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for index, (_, _, answer) in enumerate(batch):
            if not answer.done():
                answer.set_result((replies[2 * index], replies[2 * index + 1]))

    async def evalsha(self, keys: tuple[str, ...], args: list[coredis.typing.ValueT]) -> object:
        """One EVALSHA of ``SPEND``; on NOSCRIPT, load it (once for all waiting batches) and send again."""
        while True:
            loads = self.loads
            try:
                return await self.redis.evalsha(SPEND_SHA, keys=keys, args=args)
            except coredis.exceptions.NoScriptError:
                async with self.loading:
                    if self.loads == loads:  # nobody loaded it since this batch asked
                        await self.redis.script_load(SPEND)
                        self.loads += 1


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
        slack = self.slack(scale)
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
        """This hit's part of the pass's EVALSHA of ``SPEND``."""
        args: list[coredis.typing.ValueT] = [want, least, len(self.windows)]
        for amount, ms in self.windows:
            args += (amount * scale, ms)
        try:
            return await self.connection.spend(self.prefix + key, args)
        except REDIS_DOWN as exc:
            raise limits.errors.StorageError(exc) from exc

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
        self.connection.redis.connection_pool.disconnect()


def open_shared(
    redis_url: str, rates: dict[str, list[limits.RateLimitItem]], lease_percent: int
) -> dict[str, SharedWindows]:
    """Every budget on one Redis client (one connection pool)."""
    # No retries: a script resent after a lost answer would grant twice.
    connection = Connection(
        coredis.Redis.from_url(
            redis_url,
            retry_policy=NoRetryPolicy(),
            # bounded calls: a frozen Redis is a prompt 503 rate_limiter_unavailable, not a hung request
            connect_timeout=1.0,
            stream_timeout=1.0,
        )
    )
    return {name: SharedWindows(connection, items, name, lease_percent) for name, items in rates.items()}
