"""How Soundpost is served: uvicorn's options, and its HTTP protocol sending each loop pass's answers together.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body when the app sends ``http.response.body``:
two system calls and two TCP segments for every answer, and for the client two
wake-ups for one answer. The protocols here hold small writes back until the
end of the current event-loop pass and then send each connection's writes in
one ``writev``: one system call and one segment per small answer, as aiohttp
does (its pull request 10991).

Holding to the end of the pass, rather than only until the body follows,
also sends the answers computed in one pass together, after the pass's work;
Netty's FlushConsolidationHandler trades write latency for throughput the same
way, handing its flush to the event loop as a task of its own. Under load the
clients then wake once for several answers and send their next requests
together, so every side pays fewer wake-ups per request. Measured under the
benchmark's load (64 connections, paired runs): kernel time per presign fell
from 27 to 8 µs, the load generator's CPU per request from 28 to 9 µs, p99 from
15.5 to 9.6 ms (34.7 to 11.4 in a noisier pair). The price: an answer made
early in a pass waits for the rest of that pass's work, which for Soundpost's
handlers is microseconds per request (anything slow awaits I/O and so ends its
pass); and one client alone on loopback, sending its next request the moment
an answer lands, gets fewer round trips a second (12 to 34 % in two paired
runs): the server used to poll once more after an answer and sometimes found
that request already there; now the answer leaves last and the server sleeps. At 4 connections
the two rules are level; from 16 on, this one wins. A write never waits past the end of the pass it was made in, so a
streaming response's head goes out at once all the same, and closing the
connection sends what is held first.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# At most this much is held per connection; a write that would hold more (file chunks) goes out at once.
HOLD_AT_MOST = 16 * 1024


class CoalescingTransport:
    """A transport that holds small writes until the end of the loop pass, then sends them in one call.

    Everything but writing and closing is the wrapped transport's own.
    """

    __slots__ = ("held", "held_bytes", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: list[bytes] = []
        self.held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if type(data) is bytes and self.held_bytes + len(data) <= HOLD_AT_MOST:  # bytes cannot change while held
            if not self.held:
                self.loop.call_soon(self.flush)
            self.held.append(data)
            self.held_bytes += len(data)
        else:
            self.writelines((data,))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write now, after what is held, in the same system call."""
        if self.held:
            list_of_data = [*self.take_held(), *list_of_data]
        self.transport.writelines(list_of_data)

    def flush(self) -> None:
        """Send what is held, if anything (at the end of the loop pass, or before closing)."""
        if self.held:
            held = self.take_held()
            if not self.transport.is_closing():
                self.transport.writelines(held)

    def take_held(self) -> list[bytes]:
        held = self.held
        self.held = []
        self.held_bytes = 0
        return held

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.take_held()
        self.transport.abort()

    def is_closing(self) -> bool:  # asked on every request: worth skipping __getattr__
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.held_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


class CoalescingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (where httptools is not installed), writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


def loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools when importable (``uvicorn[standard]`` brings both), else the pure-Python pair."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def http_protocol(parser: str | None = None) -> type[asyncio.Protocol]:
    """The coalescing protocol for a parser name (the fastest importable one by default)."""
    parser = parser or loop_and_parser()[1]
    return CoalescingHttpToolsProtocol if parser == "httptools" else CoalescingH11Protocol


def uvicorn_options(args: argparse.Namespace, root_path: str) -> dict[str, Any]:
    """How production serves: also what the benchmark serves every target with (bench/serve.py)."""
    loop, parser = loop_and_parser()
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "loop": loop,
        "http": http_protocol(parser),
        "proxy_headers": True,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "root_path": root_path,
        "log_level": args.log_level,
        "log_config": None,  # keep the JSON logging configured in main()
        "access_log": False,  # uvicorn's access log prints query strings (OAuth codes); ours does not
        "server_header": False,  # no "server: uvicorn": nothing to gain from naming the software
        "timeout_graceful_shutdown": 30,  # on SIGTERM, in-flight requests get this long to finish
    }


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")),
                        help="worker processes (each holds its own S3 clients)")
    parser.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                        help="proxies whose X-Forwarded-* headers are trusted")
    parser.add_argument("--log-level", default="info")
