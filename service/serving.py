"""How Soundpost is served: uvicorn's options, and its HTTP protocol batching the answers of busy loop passes.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body when the app sends ``http.response.body``:
two system calls and two TCP segments for every answer, and for the client two
wake-ups for one answer. The protocols here hold a small write back and send a
connection's writes in one ``writev``: one system call and one segment per
small answer, as aiohttp does (its pull request 10991).

When the writes leave depends on what else the event loop did in the same
pass. The first answer completed in a pass leaves at once, so under light load
every answer does, and the work a request does after its answer (metrics, task
teardown) overlaps the client's turnaround. Any other answer completed in that
pass waits for the pass's end, and they leave together; Netty's
FlushConsolidationHandler trades write latency for throughput the same way,
handing its flush to the event loop as a task of its own. Under load the
clients then wake once for several answers and send their next requests
together, so every side pays fewer wake-ups per request. Measured under the
benchmark's load (64 connections, paired runs, against sending every answer at
once): kernel time per presign 21 -> 7 µs, wrk's CPU per request 23 -> 8 µs,
presign 8,267 -> 10,935 req/s, p99 14.0 -> 8.9 ms; one client alone on
loopback keeps its pace (5,193 and 5,661 req/s). A write never waits past the
end of the pass it was made in, so a streaming response's head goes out at
once all the same, and closing the connection sends what is held first.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import weakref
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# At most this much is held per connection; a write that would hold more (file chunks) goes out at once.
HOLD_AT_MOST = 16 * 1024


class LoopPass:
    """What the connections of one event loop have sent in its current pass, and who waits for its end."""

    __slots__ = ("ending", "first_sent", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # the registry below is keyed weakly by the loop: no strong way back
        self.waiting: list[CoalescingTransport] = []
        self.first_sent = False  # an answer already left in this pass
        self.ending = False  # end() is scheduled

    def end_soon(self) -> None:
        loop = self.loop()
        if not self.ending and loop is not None:
            self.ending = True
            loop.call_soon(self.end)

    def end(self) -> None:
        """The pass is over: send what waited for it, and let the next pass's first answer go at once."""
        self.ending = False
        self.first_sent = False
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            transport.flush()


_PASSES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopPass] = weakref.WeakKeyDictionary()


def loop_pass(loop: asyncio.AbstractEventLoop) -> LoopPass:
    """The one ``LoopPass`` of an event loop, shared by all its connections."""
    current = _PASSES.get(loop)
    if current is None:
        current = _PASSES[loop] = LoopPass(loop)
    return current


class CoalescingTransport:
    """A transport that holds small writes, sending the pass's first answer at once and others at its end.

    Everything but writing and closing is the wrapped transport's own.
    """

    __slots__ = ("current_pass", "held", "held_bytes", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.current_pass = loop_pass(loop)
        self.held: list[bytes] = []
        self.held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if (
            type(data) is not bytes or self.held_bytes + len(data) > HOLD_AT_MOST
        ):  # bytes cannot change while held
            self.writelines((data,))
            return
        current = self.current_pass
        if self.held and not current.first_sent:  # a body after its head: the first answer of this pass
            current.first_sent = True  # reset by the pass's end, already due: holding the head scheduled it
            self.writelines((data,))
            return
        if not self.held:
            current.waiting.append(self)
            current.end_soon()
        self.held.append(data)
        self.held_bytes += len(data)

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
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="worker processes (each holds its own S3 clients)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies whose X-Forwarded-* headers are trusted",
    )
    parser.add_argument("--log-level", default="info")
