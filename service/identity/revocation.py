"""Signed-out sessions: the cookie alone no longer proves a session once it is revoked.

Each session has an id and a sign-in time in its (signed) cookie. Signing out
revokes the id; signing out everywhere revokes every session of the user signed
in before that moment. A request checks two dict lookups in this process, never
a network call: with SOUNDPOST_REDIS_URL, revocations are also appended to a
Redis stream that every replica follows with a blocking read, so a revocation
reaches the other replicas within about a second (``FOLLOW_BLOCK_MS``; longer only
while Redis is unreachable, which is logged at ERROR and shown by /readyz).

An entry is kept only as long as a cookie it refers to could still be accepted
(the session lifetime after sign-in), locally and in the stream (trimmed by age).
Memory is bounded: past ``MAX_SESSIONS`` revoked ids, a sign-out revokes all of
that user's sessions from before it instead, which keeps one entry per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import coredis
import coredis.exceptions
from coredis.tokens import PureToken

from service.settings import Settings

logger = logging.getLogger("soundpost.revocation")

STREAM = "soundpost:revocations"
FOLLOW_BLOCK_MS = 1000
FOLLOW_BATCH = 1000
RETRY_SECONDS = 1.0
REDIS_DOWN = (coredis.exceptions.RedisError, OSError, TimeoutError)


class RevocationUnavailable(Exception):
    """The shared store could not record a revocation (this process has it)."""


class Revocations:
    """Revoked session ids and per-user "signed out everywhere" times, in this process."""

    MAX_SESSIONS = 100_000
    SWEEP_EVERY = 60.0

    def __init__(self, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_ms = lifetime * 1000
        self.clock = clock
        self.sessions: dict[str, int] = {}  # session id -> sign-in time (ms) of that session
        self.users: dict[str, int] = {}  # user id -> sessions signed in before this (ms) are revoked
        self.next_sweep = clock() + self.SWEEP_EVERY
        self.healthy = True

    def refuses(self, session_id: str, user_id: str, issued_ms: int) -> bool:
        """Whether this session was signed out (here or, with Redis, on any replica)."""
        return session_id in self.sessions or issued_ms < self.users.get(user_id, -1)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def apply_session(self, session_id: str, user_id: str, issued_ms: int) -> bool:
        """Revoke one session; False if the table was full and the user's earlier sessions went instead."""
        self.sweep()
        if len(self.sessions) >= self.MAX_SESSIONS:
            self.apply_user(user_id, self.now_ms())  # bounded memory: every earlier session of the user
            return False
        self.sessions[session_id] = issued_ms
        return True

    def apply_user(self, user_id: str, before_ms: int) -> None:
        self.sweep()
        self.users[user_id] = max(before_ms, self.users.get(user_id, before_ms))

    def sweep(self) -> None:
        """Forget entries whose cookies have expired anyway (at most once a minute)."""
        if self.clock() < self.next_sweep:
            return
        horizon = self.now_ms() - self.lifetime_ms
        self.sessions = {sid: at for sid, at in self.sessions.items() if at >= horizon}
        self.users = {uid: at for uid, at in self.users.items() if at >= horizon}
        self.next_sweep = self.clock() + self.SWEEP_EVERY

    async def revoke_session(self, session_id: str, user_id: str, issued_ms: int) -> None:
        self.apply_session(session_id, user_id, issued_ms)

    async def revoke_user(self, user_id: str) -> None:
        self.apply_user(user_id, self.now_ms())

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class SharedRevocations(Revocations):
    """The same table, fed from a Redis stream that every replica appends to and follows."""

    def __init__(self, redis_url: str, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(lifetime, clock)
        self.redis: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
        self.last_id = "0"
        self.follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.follower = asyncio.create_task(self.follow(), name="soundpost-revocations")

    async def close(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower
        self.redis.connection_pool.disconnect()

    async def revoke_session(self, session_id: str, user_id: str, issued_ms: int) -> None:
        if self.apply_session(session_id, user_id, issued_ms):
            await self.append({"s": session_id, "u": user_id, "t": str(issued_ms)})
        else:  # the table is full here: tell the others what this replica did instead
            await self.append({"u": user_id, "b": str(self.users[user_id])})

    async def revoke_user(self, user_id: str) -> None:
        before = self.now_ms()
        self.apply_user(user_id, before)
        await self.append({"u": user_id, "b": str(before)})

    async def append(self, entry: dict[str, str]) -> None:
        """Add a revocation to the stream, trimming entries older than a session can live."""
        try:
            await self.redis.xadd(
                STREAM,
                entry,  # type: ignore[arg-type]
                trim_strategy=PureToken.MINID,
                threshold=max(0, self.now_ms() - self.lifetime_ms),
                trim_operator=PureToken.APPROXIMATELY,
            )
        except REDIS_DOWN as exc:
            logger.error("cannot record a sign-out in Redis (SOUNDPOST_REDIS_URL): %s", type(exc).__name__)
            raise RevocationUnavailable from exc

    async def follow(self) -> None:
        """Apply every replica's revocations as they are appended, for this process's life."""
        while True:
            try:
                answer = await self.redis.xread(
                    {STREAM: self.last_id}, count=FOLLOW_BATCH, block=FOLLOW_BLOCK_MS
                )
            except REDIS_DOWN as exc:
                if self.healthy:
                    logger.error(
                        "cannot follow sign-outs in Redis (SOUNDPOST_REDIS_URL): %s", type(exc).__name__
                    )
                self.healthy = False
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception:  # a bug must not end the following for the process's life
                logger.exception("following sign-outs in Redis failed; trying again")
                self.healthy = False
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.healthy = True
            for entry in (answer or {}).get(STREAM, ()):
                self.apply_entry(entry.field_values)
                self.last_id = str(entry.identifier)

    def apply_entry(self, fields: Any) -> None:
        try:
            if "s" in fields:
                self.apply_session(str(fields["s"]), str(fields["u"]), int(fields["t"]))
            else:
                self.apply_user(str(fields["u"]), int(fields["b"]))
        except (KeyError, ValueError):
            logger.warning("ignored a malformed entry in the Redis stream %s", STREAM)


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
