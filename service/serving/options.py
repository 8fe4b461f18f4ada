"""How Soundpost is served: uvicorn's options, with the protocols that batch writes and bound request heads.

``service/serving/coalescing.py`` says how and why answers are written together, and
``service/serving/compat.py`` holds the protocol subclasses that put it under uvicorn
and answer 431 to a request head over ``MAX_REQUEST_HEAD``. WebSockets are off:
Soundpost has no WebSocket route, and an upgrade request is answered as plain HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
from typing import Any

from service.serving.coalescing import HOLD_AT_MOST, CoalescingTransport
from service.serving.compat import MAX_REQUEST_HEAD, CoalescingH11Protocol, CoalescingHttpToolsProtocol

__all__ = [
    "HOLD_AT_MOST",
    "MAX_REQUEST_HEAD",
    "CoalescingH11Protocol",
    "CoalescingHttpToolsProtocol",
    "CoalescingTransport",
    "add_serve_options",
    "http_protocol",
    "loop_and_parser",
    "protocol_options",
    "uvicorn_options",
]


def loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools when importable (``uvicorn[standard]`` brings both), else the pure-Python pair."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def http_protocol(parser: str | None = None) -> type[asyncio.Protocol]:
    """The coalescing protocol for a parser name (the fastest importable one by default)."""
    parser = parser or loop_and_parser()[1]
    return CoalescingHttpToolsProtocol if parser == "httptools" else CoalescingH11Protocol


def protocol_options(parser: str | None = None) -> dict[str, Any]:
    """The HTTP protocol, no WebSockets, and h11's buffer bound at the request-head bound: for uvicorn.Config."""
    return {"http": http_protocol(parser), "ws": "none", "h11_max_incomplete_event_size": MAX_REQUEST_HEAD}


def uvicorn_options(args: argparse.Namespace, root_path: str) -> dict[str, Any]:
    """How production serves: also what the benchmark serves every target with (bench/serve.py)."""
    loop, parser = loop_and_parser()
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "loop": loop,
        **protocol_options(parser),
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
