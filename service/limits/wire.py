"""The shared call's own socket to Redis: one command written, its one-line reply read, nothing in between.

The hot path sends one ``EVALSHA`` at a time (``service.limits.connection``), and
coredis spends about 0.15 ms of CPU on each (its retry, callback and
argument-checking layers) where a bare socket spends about 0.02 ms (measured).
This speaks only what that call needs: commands as RESP arrays of bulk strings out;
a simple string, an error, an integer or one bulk string in (the batch script
answers with one string of words). It connects with the settings coredis parsed
from SOUNDPOST_REDIS_URL (host or socket path, TLS context, user, password,
database), so both clients reach the same server the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any

import coredis.exceptions

Argument = str | bytes | int


def encode(args: tuple[Argument, ...]) -> bytes:
    """A RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Wire:
    """One connection, opened when first needed and again after any failure; calls take turns."""

    def __init__(self, connection_kwargs: Mapping[str, Any], timeout: float) -> None:
        self.options = connection_kwargs
        self.timeout = timeout
        self.turn = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, *args: Argument) -> bytes | int | None:
        """The reply to one command within the timeout; an error reply raises coredis's exception for it."""
        async with self.turn:
            try:
                async with asyncio.timeout(self.timeout):
                    reader, writer = await self.opened()
                    writer.write(encode(args))
                    reply = await self.reply(reader)
            except (OSError, TimeoutError, EOFError, ValueError) as exc:
                self.close()  # a half-read answer must not be taken for the next one's
                if isinstance(exc, (OSError, TimeoutError)):
                    raise
                raise coredis.exceptions.ConnectionError(f"Redis answered unreadably: {exc}") from exc
        return reply

    async def opened(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self.reader, self.writer
        if reader is not None and writer is not None and not writer.is_closing() and not reader.at_eof():
            return reader, writer  # (a connection Redis closed since, say by restarting, is opened anew)
        self.close()
        options = self.options
        if options.get("path"):
            self.reader, self.writer = await asyncio.open_unix_connection(options["path"])
        else:
            context: ssl.SSLContext | None = options.get("ssl_context")
            self.reader, self.writer = await asyncio.open_connection(
                options.get("host", "localhost"), options.get("port", 6379), ssl=context
            )
        try:
            if options.get("password"):
                user = (options["username"],) if options.get("username") else ()
                await self.handshake(("AUTH", *user, options["password"]))
            if options.get("db"):
                await self.handshake(("SELECT", options["db"]))
        except coredis.exceptions.RedisError:
            self.close()  # refused: the next call starts again from the connect
            raise
        return self.reader, self.writer

    async def handshake(self, args: tuple[Argument, ...]) -> None:
        assert self.reader is not None and self.writer is not None
        self.writer.write(encode(args))
        await self.reply(self.reader)

    @staticmethod
    async def reply(reader: asyncio.StreamReader) -> bytes | int | None:
        """One reply: +simple, -error (raised), :integer, $bulk (None when nil)."""
        line = await reader.readuntil(b"\r\n")
        kind, body = line[:1], line[1:-2]
        if kind == b"$":
            size = int(body)
            return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
        if kind == b":":
            return int(body)
        if kind == b"+":
            return body
        if kind == b"-":
            message = body.decode(errors="replace")
            if message.startswith("NOSCRIPT"):
                raise coredis.exceptions.NoScriptError(message)
            if message.startswith(("NOAUTH", "WRONGPASS")):
                raise coredis.exceptions.AuthenticationError(message)
            raise coredis.exceptions.ResponseError(message)
        raise ValueError(f"unexpected reply {line[:32]!r}")

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(RuntimeError):  # the loop it was opened on may be closed already
                self.writer.close()
        self.reader = self.writer = None
