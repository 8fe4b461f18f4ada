"""The reservation ledger in Redis, so every replica counts one quota and one set of pending slots.

Each user's account is one hash (``soundpost:usage:{user}``): ``used`` ("bytes
seconds"), ``changed`` (ms), ``p`` (the reservations' count and sums) and one
``e:{upload id}`` field per entry ("kind expiry bytes seconds", kind r/c/d for
reserved, copying, done). Each operation is one Lua script
(``service.limits.scripts``), so it reads, checks and writes atomically. A presign's
reservation rides in the script call that carries the budgets' grants and the other
presigns of the same event-loop pass (``service.limits.connection``): under load, one
round trip for many requests; it reads ``p`` rather than every entry unless the
account is near a limit. The rules are ``MemoryReservations``'; tests
run both against the same cases.
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
from service.limits import scripts
from service.limits.connection import REDIS_DOWN, Connection
from service.limits.reservations import Amount, MemoryReservations, Reservations, Verdict
from service.settings import Settings

logger = logging.getLogger("soundpost.reservations")

KEY = "soundpost:usage:{}"
# A stalled Redis answers 503 within about a second instead of holding the request.
TIMEOUT_SECONDS = 1.0
# An account nobody touched this long is dropped; its library total is counted again when needed.
IDLE_SECONDS = 7 * 86400
VERDICTS = {verdict.value.encode(): verdict for verdict in Verdict}


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


class SharedReservations(Reservations):
    """The ledger in Redis; a Redis that does not answer within a second is a 503 naming the setting."""

    def __init__(
        self, settings: Settings, connection: Connection, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(settings)
        assert settings.redis_url is not None
        self.connection = connection
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
            name: self.redis.register_script(scripts.step(body))
            for name, body in {
                "commit": scripts.COMMIT,
                "copied": scripts.COPIED,
                "release": scripts.RELEASE,
                "removed": scripts.REMOVED,
                "recount": scripts.RECOUNT,
            }.items()
        }
        self.idle = _ms(max(IDLE_SECONDS, 2 * self.ttl))
        self.fixed = " ".join(self.head()[1:])  # the quotas and the idle expiry: the same for every step

    def head(self) -> list[str]:
        """The arguments every step's script starts with: now, the quotas, and the idle expiry."""
        quotas = self.quotas
        return [
            _ms(self.clock()),
            "-1" if quotas.bytes is None else str(quotas.bytes),
            "-1" if quotas.seconds is None else repr(float(quotas.seconds)),
            self.idle,
        ]

    async def run(self, name: str, owner: str, *args: str) -> str:
        try:
            answer = await self.scripts[name](keys=[KEY.format(owner)], args=[*self.head(), *args])
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc
        return str(answer)

    def expiry(self, seconds: float) -> str:
        return _ms(self.clock() + seconds)

    async def reserve(self, owner: str, upload_id: str, amount: Amount) -> Verdict:
        """Presign's step: one ask of the shared script call (kind "r" of ``scripts.BATCH``)."""
        now = self.clock()
        words = (
            f"r {int(now * 1000)} {self.fixed} {upload_id} {amount.bytes} {float(amount.seconds)!r} "
            f"{int((now + self.ttl) * 1000)} {self.max_pending}"
        )
        try:
            word, _ = await self.connection.ask(KEY.format(owner), words)
            verdict = VERDICTS.get(word)
            if verdict is None:
                raise coredis.exceptions.ResponseError(f"the ledger answered {word!r}")
        except REDIS_DOWN as exc:
            raise unavailable(exc) from exc
        return verdict

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
        self.connection.close()


def unavailable(exc: BaseException) -> ApiError:
    """The 503 for a ledger Redis did not answer for, after the log line naming the setting."""
    logger.error(
        "cannot reach the upload quota ledger in Redis (SOUNDPOST_REDIS_URL): %s", type(exc).__name__
    )
    return ApiError(
        503,
        "limits_unavailable",
        "Upload limits cannot be checked right now. Try again in a moment.",
        headers={"Retry-After": "5"},
    )


@contextlib.asynccontextmanager
async def open_reservations(settings: Settings, connection: Connection | None) -> AsyncIterator[Reservations]:
    """In this process without SOUNDPOST_REDIS_URL; shared through Redis (on ``connection``) with it."""
    ledger: Reservations = (
        MemoryReservations(settings) if connection is None else SharedReservations(settings, connection)
    )
    try:
        yield ledger
    finally:
        await ledger.close()
