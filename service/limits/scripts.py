"""The Lua scripts Redis runs for the shared budgets and the reservation ledger, each atomic.

The hot ones go out together: ``BATCH`` answers every grant and reservation that
the requests of one event-loop pass wait for, in one ``EVALSHA``
(``service.limits.connection``). The ledger's other steps run alone, one script each.
"""

from __future__ import annotations

import hashlib

# Grants units of one budget key (``spend``), on Redis's clock.
# Each key holds its grants in a sorted set scored by the millisecond each was made; members are
# "total:units", total the key's running count after that grant (zero-padded: grants made in the
# same millisecond sort by it, and no two members are alike), so what a window holds is two
# lookups (the newest total less the total before the window), whatever the budget's size.
# The newest grant older than every window is kept: it is the count before them.
# Its arguments: want (units to grant at most), least (at fewest), and the windows, each
# {amount, milliseconds}. Returns units granted and 0, or 0 and the milliseconds until the least fits.
GRANT = """
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
  local exists = redis.call('EXISTS', key) == 1  -- a key first used (most grants of many users): two calls
  local total, start = 0, 0
  if exists then
    local old = redis.call('ZCOUNT', key, '-inf', now - longest)
    if old > 1 then redis.call('ZREMRANGEBYRANK', key, 0, old - 2) end
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    total = tonumber(string.match(newest[1], '^(%d+):'))
    now = math.max(now, tonumber(newest[2]))  -- a clock stepped back must not reorder the grants
    local first, units = total_at(0)
    start = first - units
  end
  local grant, wait = want, 0
  for _, window in ipairs(windows) do
    local amount, span = window[1], window[2]
    local outside = 0
    if exists then outside = redis.call('ZCOUNT', key, '-inf', now - span) end
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
"""

# Reads the account, drops expired entries (one HDEL); ARGV: now (ms), bytes quota, seconds quota (-1: none),
# idle (ms).
PRELUDE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local qb, qs = tonumber(ARGV[2]), tonumber(ARGV[3])
local used, changed, touched, entries, gone, pending = nil, 0, nil, {}, {}, nil
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  local f, v = flat[i], flat[i + 1]
  if string.sub(f, 1, 2) == 'e:' then
    local kind, exp, b, s = string.match(v, '^(%a) (%S+) (%S+) (%S+)$')
    if tonumber(exp) <= now then
      gone[#gone + 1] = f
    else
      entries[string.sub(f, 3)] = {kind, tonumber(b), tonumber(s)}
    end
  elseif f == 'used' then
    local b, s = string.match(v, '^(%S+) (%S+)$')
    used = {tonumber(b), tonumber(s)}
  elseif f == 'changed' then
    changed = tonumber(v)
  elseif f == 'touched' then
    touched = tonumber(v)
  elseif f == 'p' then
    pending = v
  end
end
if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
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
-- The account lives ``idle`` past its last use: renewed when a quarter of that has passed, not on
-- every step (an entry's expiry, at most half of ``idle``, always comes before the account's).
local function touch()
  local idle = tonumber(ARGV[4])
  if touched == nil or now - touched > idle / 4 then
    redis.call('HSET', key, 'touched', ARGV[1])
    redis.call('PEXPIRE', key, idle)
  end
end
-- ``p`` ("slots bytes seconds") sums the reservations the account holds, so a presign's
-- reservation reads one field instead of every entry (``RESERVE_FAST``). Each step that walked
-- the account writes it again from what the walk left.
local function save_pending()
  local b, s, n = promised(nil)
  local summary = string.format('%d %.0f %.17g', n, b, s)
  if summary ~= pending then
    redis.call('HSET', key, 'p', summary)
    pending = summary
  end
end
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
  entries[id] = {'r', tonumber(ARGV[6]), tonumber(ARGV[7])}
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
  entries[id] = nil
  return verdict
end
if used then set_used(used[1] + ab, used[2] + as) end
redis.call('HSET', key, 'changed', ARGV[1], 'e:' .. id, 'c ' .. ARGV[8] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
entries[id] = {'c', ab, as}
touch()
return 'ok'
"""

# ARGV 5..6: upload id, expiry (ms) of the "done" marker that keeps a late second commit from counting twice.
COPIED = """
local e = entries[ARGV[5]]
if e and e[1] == 'c' then
  redis.call('HSET', key, 'changed', ARGV[1], 'e:' .. ARGV[5], 'd ' .. ARGV[6] .. ' 0 0')
  entries[ARGV[5]] = {'d', 0, 0}
  touch()
end
return 'ok'
"""

# ARGV 5: upload id.
RELEASE = """
local e = entries[ARGV[5]]
if e == nil or e[1] == 'd' then return 'ok' end
redis.call('HDEL', key, 'e:' .. ARGV[5])
entries[ARGV[5]] = nil
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


def step(body: str) -> str:
    """One ledger step as a script: the account walked, ``body`` run, the pending summary saved."""
    return (
        PRELUDE
        + "local function step()\n"
        + body
        + "end\nlocal answer = step()\nsave_pending()\nreturn answer\n"
    )


# A presign's reservation without walking the account: ``p`` holds the count and sums of every
# reservation the account has, expired ones included until a walk drops them, so what fits beside
# it fits beside the live ones. Only when it does not fit (or ``p`` is missing, or the id is known
# already) is the account walked and checked exactly (``RESERVE``). An account holding 16 (or its
# cap) is walked too, so lapsed entries never pile up: Redis finds a hash's fields by scanning it,
# and every field kept makes each reservation's read and write longer. Arguments as RESERVE's
# (ARGV 1..9).
RESERVE_FAST = """
local function reserve_fast(key, a)
  local got = redis.call('HMGET', key, 'p', 'used', 'touched', 'e:' .. a[5])
  if got[1] == false or got[4] ~= false then return nil end
  local n, pb, ps = string.match(got[1], '^(%d+) (%S+) (%S+)$')
  n, pb, ps = tonumber(n), tonumber(pb), tonumber(ps)
  local cap = tonumber(a[9])
  if n >= 16 or (cap > 0 and n >= cap) then return nil end
  local qb, qs, ab, as = tonumber(a[2]), tonumber(a[3]), tonumber(a[6]), tonumber(a[7])
  if qb >= 0 or qs >= 0 then
    local ub, us = 0, 0
    if got[2] then
      ub, us = string.match(got[2], '^(%S+) (%S+)$')
      ub, us = tonumber(ub), tonumber(us)
    end
    if qb >= 0 and ((ab > 0 and ub + pb + ab > qb) or (ab == 0 and ub + pb >= qb)) then return nil end
    if qs >= 0 and ((as > 0 and us + ps + as > qs) or (as == 0 and us + ps >= qs)) then return nil end
  end
  redis.call('HSET', key, 'e:' .. a[5], 'r ' .. a[8] .. ' ' .. a[6] .. ' ' .. a[7],
    'p', string.format('%d %.0f %.17g', n + 1, pb + ab, ps + as))
  local now, idle = tonumber(a[1]), tonumber(a[4])
  if got[3] == false or now - tonumber(got[3]) > idle / 4 then
    redis.call('HSET', key, 'touched', a[1])
    redis.call('PEXPIRE', key, idle)
  end
  return 'ok'
end
"""

# Every ask of one pass, one key each, one argument each: its words, space-separated (one argument
# rather than ten: the client's work grows with the number of arguments).
# "g want least count amount ms ..." (a budget grant): units to grant at most and at fewest, then each
# window's amount and milliseconds; answers units granted and 0, or 0 and the milliseconds until the
# least fits. "r ..." (a reservation): the ledger's ARGV 1..9 (PRELUDE's four, then RESERVE's five);
# answers its verdict and 0. The answers go back as one string of words, two per key: one bulk
# reply for the client to read, however many keys the call carried.
BATCH = (
    GRANT
    + RESERVE_FAST
    + "local function reserve(KEYS, ARGV)\n"  # the walking step, its KEYS and ARGV this ask's own
    + step(RESERVE)
    + """end

local answers = {}
for k = 1, #KEYS do
  local ask = ARGV[k]
  if string.byte(ask, 1) == 114 then  -- 'r'
    local a = {string.match(ask, '^r (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')}
    answers[2 * k - 1], answers[2 * k] = reserve_fast(KEYS[k], a) or reserve({KEYS[k]}, a), 0
  else
    local want, least, count, rest = string.match(ask, '^g (%d+) (%d+) (%d+) (.*)$')
    local windows = {}
    for amount, span in string.gmatch(rest, '(%d+) (%d+)') do
      windows[#windows + 1] = {tonumber(amount), tonumber(span)}
    end
    answers[2 * k - 1], answers[2 * k] = spend(KEYS[k], tonumber(want), tonumber(least), windows)
  end
end
return table.concat(answers, ' ')
"""
)

BATCH_SHA = hashlib.sha1(BATCH.encode()).hexdigest()  # noqa: S324 - the name Redis gives the script, not a secret
