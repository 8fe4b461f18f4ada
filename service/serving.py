"""How Soundpost is served: uvicorn's options, and its HTTP protocol sending each small answer in one write.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body when the app sends ``http.response.body``:
two system calls and two TCP segments for every answer, and for the client two
wake-ups for one answer. Soundpost's answers are small JSON documents, so the
protocols here hold a small write back until the next write on the same
connection (the body, sent moments later in the same loop pass) and send both
in one: one system call and one segment, as aiohttp does (its pull request
10991) for the same reason. A held write never waits past the end of the
current event-loop pass, so a streaming response's head goes out at once all
the same, and closing the connection sends what is held first.
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

# Writes up to this size wait for the next one; bigger ones (file chunks) go out as they come.
HOLD_AT_MOST = 16 * 1024


class CoalescingTransport:
    """A transport that holds a small write until the next write or the end of the loop pass.

    Everything but writing and closing is the wrapped transport's own.
    """

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self.held
        if held is not None:
            self.held = None
            self.transport.writelines((held, data))  # one writev: head and body in one segment
        elif type(data) is bytes and len(data) <= HOLD_AT_MOST:  # bytes cannot change while held
            self.held = data
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything (at the end of the loop pass, or before closing)."""
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.flush()
        self.transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.held = None
        self.transport.abort()

    def is_closing(self) -> bool:  # asked on every request: worth skipping __getattr__
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + (len(self.held) if self.held is not None else 0)

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
