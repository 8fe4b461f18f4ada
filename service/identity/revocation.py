"""Signed-out sessions: the cookie alone no longer proves a session once it is revoked.

Each session has an id and a sign-in time in its (signed) cookie. Signing out
revokes the id; signing out everywhere revokes every session of the user signed
in before that moment. A request checks two dict lookups in this process, never
a network call: with SOUNDPOST_REDIS_URL, revocations are also appended to a
Redis stream that every replica follows with a blocking read, so a revocation
reaches the other replicas within about a second (``FOLLOW_BLOCK_MS``; longer only
while Redis is unreachable, which is logged at ERROR and shown by /readyz).

Redis trouble does not bring a signed-out session back:

- A revocation that cannot reach Redis is kept here and published once Redis
  answers again (the sign-out still answers 503, so the user knows and can retry).
- Redis holds an "epoch" key, made when the stream is first used. A replica that
  finds it gone or changed knows Redis lost its data (restarted without
  persistence, flushed), and one that finds the stream gone after reading from
  it knows the stream alone was lost (deleted, evicted): either way it publishes
  again every entry it holds that a cookie could still match, and reads the
  stream from its start. For ``REPUBLISH_GRACE``
  seconds after an epoch is made, sessions signed in before it are answered 503,
  not accepted, while the replicas that remember publish again.
- A replica that has not yet read the stream (started while Redis is down)
  answers 503 for every session rather than accept one signed out elsewhere.

Every Redis call is bounded (``CONNECT_TIMEOUT``, ``READ_TIMEOUT``), so a frozen
Redis costs a request about a second, never a hang.

An entry is kept only as long as a cookie it refers to could still be accepted
(the session lifetime after sign-in), locally and in the stream (trimmed by age).
Memory is bounded: past ``MAX_SESSIONS`` revoked ids, a sign-out revokes all of
that user's sessions from before it instead, which keeps one entry per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import coredis
import coredis.exceptions
from coredis.retry import ConstantRetryPolicy
from coredis.tokens import PureToken

from service.settings import Settings

logger = logging.getLogger("soundpost.revocation")

STREAM = "soundpost:revocations"
EPOCH = "soundpost:revocations:epoch"  # "<made at, ms>:<random>", set once per life of Redis's data
FOLLOW_BLOCK_MS = 1000
FOLLOW_BATCH = 1000
RETRY_SECONDS = 1.0
CONNECT_TIMEOUT = 1.0  # seconds to open a connection to Redis
READ_TIMEOUT = 1.0  # seconds Redis may take to answer a command (a blocking read gets its block on top)
REPUBLISH_GRACE = 5.0  # seconds for the other replicas to notice a new epoch and publish again
STALE_AFTER = 5.0  # readiness: the follower's last successful read may be at most this old
MAX_PENDING = 10_000  # sign-outs kept for Redis; beyond that, every entry held is published again
REDIS_DOWN = (coredis.exceptions.RedisError, OSError, TimeoutError)


class RevocationUnavailable(Exception):
    """The shared store could not record a revocation (this process has it and will publish it later)."""


class Revocations:
    """Revoked session ids and per-user "signed out everywhere" times, in this process."""

    MAX_SESSIONS = 100_000
    SWEEP_EVERY = 60.0

    def __init__(self, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_ms = lifetime * 1000
        self.clock = clock
        self.sessions: dict[str, tuple[int, str]] = {}  # session id -> (its sign-in time in ms, user id)
        self.users: dict[str, int] = {}  # user id -> sessions signed in before this (ms) are revoked
        self.next_sweep = clock() + self.SWEEP_EVERY
        self.caught_up = True  # whether this process has read every revocation made elsewhere
        self.doubt_before_ms = 0  # sessions signed in before this ...
        self.doubt_until_ms = 0  # ... are in doubt until this time (a new epoch: others publish again)

    def refuses(self, session_id: str, user_id: str, issued_ms: int) -> bool:
        """Whether this session was signed out (here or, with Redis, on any replica)."""
        return session_id in self.sessions or issued_ms < self.users.get(user_id, -1)

    def undecided(self, issued_ms: int) -> bool:
        """Whether this process cannot yet tell if a session signed in at ``issued_ms`` was signed out."""
        if not self.caught_up:
            return True
        return issued_ms < self.doubt_before_ms and self.now_ms() < self.doubt_until_ms

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def apply_session(self, session_id: str, user_id: str, issued_ms: int) -> bool:
        """Revoke one session; False if the table was full and the user's earlier sessions went instead."""
        self.sweep()
        if len(self.sessions) >= self.MAX_SESSIONS and session_id not in self.sessions:
            self.apply_user(user_id, self.now_ms())  # bounded memory: every earlier session of the user
            return False
        self.sessions[session_id] = (issued_ms, user_id)
        return True

    def apply_user(self, user_id: str, before_ms: int) -> None:
        self.sweep()
        self.users[user_id] = max(before_ms, self.users.get(user_id, before_ms))

    def sweep(self) -> None:
        """Forget entries whose cookies have expired anyway (at most once a minute)."""
        if self.clock() < self.next_sweep:
            return
        self.forget_expired()
        self.next_sweep = self.clock() + self.SWEEP_EVERY

    def forget_expired(self) -> None:
        horizon = self.now_ms() - self.lifetime_ms
        self.sessions = {sid: entry for sid, entry in self.sessions.items() if entry[0] >= horizon}
        self.users = {uid: at for uid, at in self.users.items() if at >= horizon}

    def held(self) -> list[dict[str, str]]:
        """Every entry this process holds that a cookie could still match, as stream entries."""
        self.forget_expired()
        entries = [{"s": sid, "u": uid, "t": str(at)} for sid, (at, uid) in self.sessions.items()]
        return entries + [{"u": uid, "b": str(before)} for uid, before in self.users.items()]

    async def revoke_session(self, session_id: str, user_id: str, issued_ms: int) -> None:
        self.apply_session(session_id, user_id, issued_ms)

    async def revoke_user(self, user_id: str) -> None:
        self.apply_user(user_id, self.now_ms())

    async def flush(self) -> None:
        """Publish what could not be published before; ``RevocationUnavailable`` if still not."""

    async def check(self) -> str:
        """Readiness: "ok", or why revocations made elsewhere may be missed."""
        return "ok"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def bounded_retries() -> ConstantRetryPolicy:
    """Try again once on a broken connection (Redis restarted), never on a timeout: coredis's default
    retries timeouts too, which made a frozen Redis cost 3 to 5 s a call instead of 1 (measured)."""
    return ConstantRetryPolicy((coredis.exceptions.ConnectionError,), 2, 0.01)


def redis_client(redis_url: str, read_timeout: float = READ_TIMEOUT) -> coredis.Redis[str]:
    """A client whose every call is bounded: a frozen Redis is an error within about a second, not a hang."""
    return coredis.Redis.from_url(
        redis_url,
        decode_responses=True,
        connect_timeout=CONNECT_TIMEOUT,
        stream_timeout=read_timeout,
        retry_policy=bounded_retries(),
    )


class SharedRevocations(Revocations):
    """The same table, fed from a Redis stream that every replica appends to and follows."""

    def __init__(self, redis_url: str, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(lifetime, clock)
        self.redis = redis_client(redis_url)
        # The follower's blocking read waits FOLLOW_BLOCK_MS by design: its timeout comes on top of that.
        self.reader = redis_client(redis_url, READ_TIMEOUT + FOLLOW_BLOCK_MS / 1000)
        self.last_id = "0"
        self.epoch: str | None = None
        self.pending: list[dict[str, str]] = []  # sign-outs Redis has not recorded yet, oldest first
        self.republish = False  # publish every entry held again (new epoch, or too many pending)
        self.last_read: float | None = None  # time.monotonic() of the follower's last successful read
        self.caught_up = False
        self.follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read what is there before serving (when Redis answers), then follow for the process's life."""
        with contextlib.suppress(*REDIS_DOWN):
            await self.follow_once(block=False)
        self.follower = asyncio.create_task(self.follow(), name="soundpost-revocations")

    async def close(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower
        self.redis.connection_pool.disconnect()
        self.reader.connection_pool.disconnect()

    async def revoke_session(self, session_id: str, user_id: str, issued_ms: int) -> None:
        if self.apply_session(session_id, user_id, issued_ms):
            await self.publish({"s": session_id, "u": user_id, "t": str(issued_ms)})
        else:  # the table is full here: tell the others what this replica did instead
            await self.publish({"u": user_id, "b": str(self.users[user_id])})

    async def revoke_user(self, user_id: str) -> None:
        before = self.now_ms()
        self.apply_user(user_id, before)
        await self.publish({"u": user_id, "b": str(before)})

    async def publish(self, entry: dict[str, str]) -> None:
        """Queue a revocation for the stream and send the queue; it stays queued if Redis cannot take it."""
        if len(self.pending) >= MAX_PENDING:
            self.pending.clear()  # bounded memory: the table holds them all, and all will be sent
            self.republish = True
        self.pending.append(entry)
        await self.flush()

    async def flush(self) -> None:
        try:
            await self.send_pending()
        except REDIS_DOWN as exc:
            logger.error(
                "cannot record a sign-out in Redis (SOUNDPOST_REDIS_URL): %s; kept to publish once it answers",
                type(exc).__name__,
            )
            raise RevocationUnavailable from exc

    async def send_pending(self) -> None:
        """Append the queued revocations; each leaves the queue once Redis has it (a duplicate is harmless)."""
        if self.republish:
            self.republish = False
            self.pending = self.held() + self.pending
        for entry in list(self.pending):
            await self.append(entry)
            with contextlib.suppress(ValueError):  # a concurrent flush may have sent it too
                self.pending.remove(entry)

    async def append(self, entry: dict[str, str]) -> None:
        """Add a revocation to the stream, trimming entries older than a session can live."""
        await self.redis.xadd(
            STREAM,
            entry,  # type: ignore[arg-type]
            trim_strategy=PureToken.MINID,
            threshold=max(0, self.now_ms() - self.lifetime_ms),
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def check_epoch(self) -> None:
        """Notice that Redis lost its data (the epoch key is gone or new): publish again what is held here."""
        if self.last_id != "0" and not await self.redis.exists([STREAM]):
            self.lost("the stream was deleted or evicted")  # the epoch key outlived it
        epoch = await self.redis.get(EPOCH)
        if epoch is None:
            await self.redis.set(EPOCH, f"{self.now_ms()}:{secrets.token_hex(8)}", condition=PureToken.NX)
            epoch = await self.redis.get(EPOCH)
        if epoch is None or epoch == self.epoch:
            return
        if self.epoch is not None:
            self.lost("its data was lost")
        self.epoch = epoch
        made_ms = epoch_made_ms(epoch)
        self.doubt_before_ms, self.doubt_until_ms = made_ms, made_ms + int(REPUBLISH_GRACE * 1000)

    def lost(self, how: str) -> None:
        """Redis no longer has the sign-outs: publish again what this replica holds, read the stream anew."""
        logger.error(
            "Redis lost the sign-outs (%s; SOUNDPOST_REDIS_URL: give it persistence, appendonly yes, "
            "and maxmemory-policy noeviction); publishing again the %d this replica holds",
            how,
            len(self.sessions) + len(self.users),
        )
        self.republish = True
        self.last_id = "0"  # the other replicas publish theirs again too: read the new stream whole

    async def follow_once(self, block: bool) -> None:
        """One round: check the epoch, send what waits, read what was appended since the last round."""
        await self.check_epoch()
        await self.send_pending()
        answer = await self.reader.xread(
            {STREAM: self.last_id}, count=FOLLOW_BATCH, block=FOLLOW_BLOCK_MS if block else None
        )
        self.last_read = time.monotonic()
        entries = (answer or {}).get(STREAM, ())
        for entry in entries:
            self.apply_entry(entry.field_values)
            self.last_id = str(entry.identifier)
        if len(entries) < FOLLOW_BATCH and not self.caught_up:
            self.caught_up = True
            logger.info("read the sign-outs in Redis; accepting sessions")

    async def follow(self) -> None:
        """Apply every replica's revocations as they are appended, for this process's life."""
        failing = False
        while True:
            try:
                await self.follow_once(block=self.caught_up)
            except REDIS_DOWN as exc:
                if not failing:
                    logger.error(
                        "cannot follow sign-outs in Redis (SOUNDPOST_REDIS_URL): %s", type(exc).__name__
                    )
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:  # a bug must not end the following for the process's life
                logger.exception("following sign-outs in Redis failed; trying again")
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if failing:
                logger.warning("following sign-outs in Redis again")
            failing = False

    def following(self) -> bool:
        """Whether the follower read the stream successfully within ``STALE_AFTER`` seconds."""
        return self.last_read is not None and time.monotonic() - self.last_read < STALE_AFTER

    async def check(self) -> str:
        """Readiness: a timed PING, the follower's last successful read, and what waits to be published."""
        try:
            await self.redis.ping()
        except REDIS_DOWN as exc:
            return f"unreachable (Redis: {type(exc).__name__})"
        if not self.caught_up:
            return "not read yet (Redis)"
        if not self.following():
            return "not following (Redis: no successful read for a while)"
        if self.pending or self.republish:
            return "publishing (sign-outs made during a Redis outage)"
        return "ok"

    def apply_entry(self, fields: Any) -> None:
        try:
            if "s" in fields:
                self.apply_session(str(fields["s"]), str(fields["u"]), int(fields["t"]))
            else:
                self.apply_user(str(fields["u"]), int(fields["b"]))
        except (KeyError, ValueError):
            logger.warning("ignored a malformed entry in the Redis stream %s", STREAM)


def epoch_made_ms(epoch: str) -> int:
    """When an epoch was made (its first field); 0 for a value this version did not write."""
    made, _, _ = epoch.partition(":")
    return int(made) if made.isdigit() else 0


@contextlib.asynccontextmanager
async def open_revocations(settings: Settings) -> AsyncIterator[Revocations]:
    """In this process without SOUNDPOST_REDIS_URL; shared through Redis with it."""
    revocations: Revocations
    if settings.redis_url is None:
        revocations = Revocations(settings.session_max_age)
    else:
        revocations = SharedRevocations(str(settings.redis_url), settings.session_max_age)
    await revocations.start()
    try:
        yield revocations
    finally:
        await revocations.close()
