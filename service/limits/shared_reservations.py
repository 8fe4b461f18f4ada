"""The reservation ledger in Redis, so every replica counts one quota and one set of pending slots.

Each user's account is one hash (``soundpost:usage:{user}``): ``used`` ("bytes
seconds"), ``changed`` (ms) and one ``e:{upload id}`` field per entry ("kind expiry
bytes seconds", kind r/c/d for reserved, copying, done). Each operation is one Lua
script, so it reads, checks and writes atomically, in one round trip: presign pays
exactly one. The rules are ``MemoryReservations``'; tests run both against the same cases.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import coredis
import coredis.exceptions
from coredis.retry import ConstantRetryPolicy

from service.errors import ApiError
from service.limits.reservations import Amount, MemoryReservations, Reservations, Verdict
from service.settings import Settings

logger = logging.getLogger("soundpost.reservations")

KEY = "soundpost:usage:{}"
# A stalled Redis answers 503 within about a second instead of holding the request.
TIMEOUT_SECONDS = 1.0
# An account nobody touched this long is dropped; its library total is counted again when needed.
IDLE_SECONDS = 7 * 86400
REDIS_DOWN = (coredis.exceptions.RedisError, OSError, TimeoutError)

# Reads the account, drops expired entries; ARGV: now (ms), bytes quota, seconds quota (-1: none), idle (ms).
PRELUDE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local qb, qs = tonumber(ARGV[2]), tonumber(ARGV[3])
local used, changed, entries = nil, 0, {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  local f, v = flat[i], flat[i + 1]
  if f == 'used' then
    local b, s = string.match(v, '^(%S+) (%S+)$')
    used = {tonumber(b), tonumber(s)}
  elseif f == 'changed' then
    changed = tonumber(v)
  elseif string.sub(f, 1, 2) == 'e:' then
    local kind, exp, b, s = string.match(v, '^(%a) (%S+) (%S+) (%S+)$')
    if tonumber(exp) <= now then
      redis.call('HDEL', key, f)
    else
      entries[string.sub(f, 3)] = {kind, tonumber(b), tonumber(s)}
    end
  end
end
local function promised(besides)
  local b, s, n = 0, 0, 0
  for id, e in pairs(entries) do
    if e[1] == 'r' and id ~= besides then b, s, n = b + e[2], s + e[3], n + 1 end
  end
  return b, s, n
end
local function over(pb, ps, ab, as)
  local ub, us = 0, 0
  if used then ub, us = used[1], used[2] end
  if qb >= 0 and ((ab > 0 and ub + pb + ab > qb) or (ab == 0 and ub + pb >= qb)) then return 'bytes' end
  if qs >= 0 and ((as > 0 and us + ps + as > qs) or (as == 0 and us + ps >= qs)) then return 'seconds' end
  return 'ok'
end
local function set_used(b, s)
  used = {b, s}
  redis.call('HSET', key, 'used', string.format('%.0f %.17g', b, s), 'changed', ARGV[1])
end
local function touch() redis.call('PEXPIRE', key, tonumber(ARGV[4])) end
"""

# ARGV 5..9: upload id, bytes, seconds, expiry (ms), most pending slots.
RESERVE = """
local id = ARGV[5]
if entries[id] then return 'ok' end
local pb, ps, n = promised(id)
if tonumber(ARGV[9]) > 0 and n >= tonumber(ARGV[9]) then return 'pending' end
local verdict = over(pb, ps, tonumber(ARGV[6]), tonumber(ARGV[7]))
if verdict == 'ok' then
  redis.call('HSET', key, 'e:' .. id, 'r ' .. ARGV[8] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
  touch()
end
return verdict
"""

# ARGV 5..10: upload id, bytes, seconds, in-flight expiry (ms), seed bytes and seconds ('' when not counted).
COMMIT = """
local id = ARGV[5]
local e = entries[id]
if e and e[1] ~= 'r' then return 'ok' end
if used == nil and (qb >= 0 or qs >= 0) then
  if ARGV[9] == '' then return 'seed' end
  used = {tonumber(ARGV[9]), tonumber(ARGV[10])}
end
local ab, as = tonumber(ARGV[6]), tonumber(ARGV[7])
local pb, ps = promised(id)
local verdict = over(pb, ps, ab, as)
if verdict ~= 'ok' then
  redis.call('HDEL', key, 'e:' .. id)
  return verdict
end
if used then set_used(used[1] + ab, used[2] + as) end
redis.call('HSET', key, 'changed', ARGV[1], 'e:' .. id, 'c ' .. ARGV[8] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
touch()
return 'ok'
"""

# ARGV 5..6: upload id, expiry (ms) of the "done" marker that keeps a late second commit from counting twice.
COPIED = """
local e = entries[ARGV[5]]
if e and e[1] == 'c' then
  redis.call('HSET', key, 'changed', ARGV[1], 'e:' .. ARGV[5], 'd ' .. ARGV[6] .. ' 0 0')
  touch()
end
return 'ok'
"""

# ARGV 5: upload id.
RELEASE = """
local e = entries[ARGV[5]]
if e == nil or e[1] == 'd' then return 'ok' end
redis.call('HDEL', key, 'e:' .. ARGV[5])
if e[1] == 'c' and used then set_used(math.max(0, used[1] - e[2]), math.max(0, used[2] - e[3])) end
return 'ok'
"""

# ARGV 5..6: bytes, seconds.
REMOVED = """
if used then
  set_used(math.max(0, used[1] - tonumber(ARGV[5])), math.max(0, used[2] - tonumber(ARGV[6])))
  touch()
end
return 'ok'
"""

# ARGV 5..6: library bytes listed, when the LIST began (ms).
RECOUNT = """
if used == nil or changed >= tonumber(ARGV[6]) then return 'no' end
for _, e in pairs(entries) do
  if e[1] == 'c' then return 'no' end
end
set_used(tonumber(ARGV[5]), used[2])
touch()
return 'ok'
"""


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


class SharedReservations(Reservations):
    """The ledger in Redis; a Redis that does not answer within a second is a 503 naming the setting."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        assert settings.redis_url is not None
        self.clock = clock
        self.redis: coredis.Redis[str] = coredis.Redis.from_url(
            str(settings.redis_url),
            decode_responses=True,
            connect_timeout=TIMEOUT_SECONDS,
            stream_timeout=TIMEOUT_SECONDS,
            # A connection dropped under load is tried once more (every step is safe to repeat but
            # ``removed``, which the recount corrects); a Redis that does not answer is not waited for twice.
            retry_policy=ConstantRetryPolicy((coredis.exceptions.ConnectionError,), retries=1, delay=0.01),
        )
        self.scripts = {
            name: self.redis.register_script(PRELUDE + body)
            for name, body in {
                "reserve": RESERVE,
                "commit": COMMIT,
                "copied": COPIED,
                "release": RELEASE,
                "removed": REMOVED,
                "recount": RECOUNT,
            }.items()
        }
        self.idle = _ms(max(IDLE_SECONDS, 2 * self.ttl))

    async def run(self, name: str, owner: str, *args: str) -> str:
        quotas = self.quotas
        head = [
            _ms(self.clock()),
            "-1" if quotas.bytes is None else str(quotas.bytes),
            "-1" if quotas.seconds is None else repr(float(quotas.seconds)),
            self.idle,
        ]
        try:
            answer = await self.scripts[name](keys=[KEY.format(owner)], args=[*head, *args])
        except REDIS_DOWN as exc:
            logger.error(
                "cannot reach the upload quota ledger in Redis (SOUNDPOST_REDIS_URL): %s", type(exc).__name__
            )
            raise ApiError(
                503,
                "limits_unavailable",
                "Upload limits cannot be checked right now. Try again in a moment.",
                headers={"Retry-After": "5"},
            ) from exc
        return str(answer)

    def expiry(self, seconds: float) -> str:
        return _ms(self.clock() + seconds)

    async def reserve(self, owner: str, upload_id: str, amount: Amount) -> Verdict:
        args = (str(amount.bytes), repr(float(amount.seconds)), self.expiry(self.ttl), str(self.max_pending))
        return Verdict(await self.run("reserve", owner, upload_id, *args))

    async def commit(
        self, owner: str, upload_id: str, amount: Amount, hold: float, seed: Amount | None = None
    ) -> Verdict:
        seeded = ("", "") if seed is None else (str(seed.bytes), repr(float(seed.seconds)))
        args = (str(amount.bytes), repr(float(amount.seconds)), self.expiry(hold), *seeded)
        return Verdict(await self.run("commit", owner, upload_id, *args))

    async def copied(self, owner: str, upload_id: str, hold: float) -> None:
        await self.run("copied", owner, upload_id, self.expiry(hold))

    async def release(self, owner: str, upload_id: str) -> None:
        await self.run("release", owner, upload_id)

    async def removed(self, owner: str, amount: Amount) -> None:
        await self.run("removed", owner, str(amount.bytes), repr(float(amount.seconds)))

    async def recount(self, owner: str, library_bytes: int, since: float) -> bool:
        return await self.run("recount", owner, str(library_bytes), _ms(since)) == "ok"

    async def used(self, owner: str) -> Amount | None:
        try:
            value = await self.redis.hget(KEY.format(owner), "used")
        except REDIS_DOWN:
            return None  # a display figure only: unknown rather than a failed page
        if not value:
            return None
        stored_bytes, seconds = str(value).split()
        return Amount(int(float(stored_bytes)), float(seconds))

    async def close(self) -> None:
        self.redis.connection_pool.disconnect()


@contextlib.asynccontextmanager
async def open_reservations(settings: Settings) -> AsyncIterator[Reservations]:
    """In this process without SOUNDPOST_REDIS_URL; shared through Redis with it."""
    ledger = MemoryReservations(settings) if settings.redis_url is None else SharedReservations(settings)
    try:
        yield ledger
    finally:
        await ledger.close()
