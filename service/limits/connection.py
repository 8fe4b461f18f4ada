"""The one Redis client the hot path shares: every grant and reservation of one event-loop pass in one script call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

import coredis
import coredis.exceptions
from coredis.retry import NoRetryPolicy

from service.limits.scripts import BATCH, BATCH_SHA
from service.limits.wire import Wire
from service.settings import Settings

TIMEOUT_SECONDS = 1.0
REDIS_DOWN = (coredis.exceptions.RedisError, OSError, TimeoutError)

Reply = tuple[bytes, int]  # the answer's first word (units granted, or a verdict) and its second
Ask = tuple[str, str, "asyncio.Future[Reply]"]


@dataclass
class Connection:
    """Sends what the requests wait for as few EVALSHAs of ``BATCH`` as it can, one call at a time.

    The client's work per command is several times what Redis spends on a grant
    (measured: coredis about 130 µs of CPU per PING, a bare socket 19 µs), so asks
    go out together: those that arrive while a call is on its way wait for its
    answer and then go as the next call, up to ``BATCH`` asks a call. Alone, an ask
    goes at once (one round trip); under load, a round trip's worth of requests
    share one command. One call at a time also means that when Redis comes back
    without the script (restarted), only that call draws the NOSCRIPT.
    """

    BATCH: ClassVar[int] = 128  # keys per script call at most: Redis runs one script at a time

    redis: coredis.Redis[bytes]  # for what is not on the hot path (readiness's PING, tests)
    wire: Wire
    loaded: bool = False  # whether Redis holds BATCH, as far as this process knows
    waiting: list[Ask] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None
    scheduled: bool = False

    async def ask(self, key: str, words: str) -> Reply:
        """One key's answer to ``words`` (see ``BATCH``), asked together with the others waiting."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Reply] = loop.create_future()
        self.waiting.append((key, words, answer))
        if self.sending is None and not self.scheduled:
            self.scheduled = True  # at the end of this pass: the asks the pass's other requests make go too
            loop.call_soon(self.flush)
        return await answer

    def flush(self) -> None:
        self.scheduled = False
        if self.sending is not None or not self.waiting:
            return
        batch, self.waiting = self.waiting[: self.BATCH], self.waiting[self.BATCH :]
        self.sending = asyncio.ensure_future(self.send(batch))  # held: the loop keeps only weak references
        self.sending.add_done_callback(self.sent)

    def sent(self, task: asyncio.Task[None]) -> None:
        """A call answered: what waited for it goes next."""
        self.sending = None
        self.flush()

    async def send(self, batch: list[Ask]) -> None:
        keys = [key for key, _, _ in batch]
        args = [words for _, words, _ in batch]
        try:
            replies = (await self.evalsha(keys, args)).split()
        except BaseException as exc:  # every ask of the batch learns why, the task ends quietly
            if isinstance(exc, REDIS_DOWN):  # and so do those waiting behind it: Redis is not answering
                batch, self.waiting = batch + self.waiting, []
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for index, (_, _, answer) in enumerate(batch):
            if not answer.done():
                answer.set_result((replies[2 * index], int(replies[2 * index + 1])))

    async def evalsha(self, keys: list[str], args: list[str]) -> bytes:
        """One EVALSHA of ``BATCH``; the script is loaded before the first and again after a NOSCRIPT.

        Only one call is ever on its way (``flush``), so after a restart only that call
        draws the NOSCRIPT, loads the script and is sent once more.
        """
        for _ in range(2):
            if not self.loaded:
                await self.wire.call("SCRIPT", "LOAD", BATCH)
                self.loaded = True
            try:
                answer = await self.wire.call("EVALSHA", BATCH_SHA, len(keys), *keys, *args)
            except coredis.exceptions.NoScriptError:
                self.loaded = False  # Redis restarted empty (or its scripts were flushed)
                continue
            if isinstance(answer, bytes):
                return answer
            raise coredis.exceptions.ResponseError(f"the batch script answered {answer!r}")
        raise coredis.exceptions.NoScriptError("the batch script was not kept after SCRIPT LOAD")

    def close(self) -> None:
        """Drop the connections (disconnecting twice is harmless)."""
        self.wire.close()
        self.redis.connection_pool.disconnect()


def shared_connection(settings: Settings) -> Connection | None:
    """The connection replicas share limits through (SOUNDPOST_REDIS_URL), or None: limits in this process."""
    return None if settings.redis_url is None else open_connection(str(settings.redis_url))


def open_connection(redis_url: str) -> Connection:
    """One client, one connection pool, for every budget and the ledger's reservations."""
    # No retries: a script resent after a lost answer would grant twice.
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        redis_url,
        retry_policy=NoRetryPolicy(),
        # bounded calls: a frozen Redis is a prompt 503, not a hung request
        connect_timeout=TIMEOUT_SECONDS,
        stream_timeout=TIMEOUT_SECONDS,
    )
    return Connection(client, Wire(client.connection_pool.connection_kwargs, TIMEOUT_SECONDS))
