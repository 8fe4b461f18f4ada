"""Real servers on 127.0.0.1 for tests: an ASGI app under uvicorn on a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from service.serving.options import protocol_options


def port_of(url: str) -> int:
    """The port of an ``http://host:port[/path]`` URL."""
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def bound_socket(port: int = 0) -> socket.socket:
    """A listening socket on a free loopback port, so the URL is known before the app is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def serve_asgi(
    make_app: Callable[[str], Any], root_path: str = "", port: int = 0, parser: str | None = None
) -> Iterator[str]:
    """Serve ``make_app(base_url)`` with uvicorn; yields the base URL once the lifespan has started.

    It is served with Soundpost's own HTTP protocol (service.serving.options; ``parser`` picks
    ``"httptools"`` or ``"h11"``, by default the one production uses). With
    ``root_path`` the app is served the way ``soundpost serve`` serves it
    under a path prefix, and the base URL includes the prefix. A fixed ``port``
    lets a test stop a server and start it again where its clients expect it.
    """
    sock = bound_socket(port)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}{root_path}"
    config = uvicorn.Config(
        make_app(base_url),
        log_level="warning",
        lifespan="on",
        root_path=root_path,
        **protocol_options(parser),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start; see the log above")
        time.sleep(0.01)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
