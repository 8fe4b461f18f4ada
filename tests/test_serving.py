"""How answers leave the server: each small answer in one write; in a busy loop pass, together at its end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from service.serving.options import (
    HOLD_AT_MOST,
    MAX_REQUEST_HEAD,
    CoalescingH11Protocol,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
    add_serve_options,
    uvicorn_options,
)
from tests.support import raw_http
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.peers  # real servers started by the tests themselves

PROTOCOLS = [CoalescingHttpToolsProtocol, CoalescingH11Protocol]


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class RecordingTransport(asyncio.Transport):
    """A connection that records each write call (one call is one system call on a real socket)."""

    def __init__(self, events: list[str] | None = None, name: str = "") -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events = [] if events is None else events  # a list shared by several connections orders them all
        self.name = name
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.events.append(self.name + "write")

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(bytes(d) for d in list_of_data))
        self.events.append(self.name + "write")

    def close(self) -> None:
        self.closed = True
        self.events.append("close")

    def abort(self) -> None:
        self.closed = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)


async def echo_length(request: Request) -> Response:
    return JSONResponse({"received": len(await request.body())})


async def small(request: Request) -> Response:
    request.app.state.events.append("answered " + request.url.path)
    return JSONResponse({"key": "uploads/abc/take.wav", "fields": {"policy": "x" * 600}})


async def streamed(request: Request) -> Response:
    release: asyncio.Event = request.app.state.release

    async def chunks() -> Any:
        await release.wait()
        yield b"late body"

    return StreamingResponse(chunks(), media_type="text/plain")


def app() -> Starlette:
    application = Starlette(
        routes=[
            Route("/small", small),
            Route("/streamed", streamed),
            Route("/echo", echo_length, methods=["POST"]),
        ]
    )
    application.state.release = asyncio.Event()
    application.state.events = []
    return application


async def passes(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def connect(
    protocol_class: type[asyncio.Protocol],
    application: Starlette,
    name: str = "",
) -> tuple[Any, RecordingTransport]:
    config = uvicorn.Config(application, http=protocol_class, lifespan="off", log_level="warning")
    protocol: Any = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = RecordingTransport(application.state.events, name)
    protocol.connection_made(transport)
    return protocol, transport


@pytest.mark.parametrize("protocol_class", PROTOCOLS)
@on_a_loop
async def test_a_small_answer_leaves_in_one_write(protocol_class: type[asyncio.Protocol]) -> None:
    """Status line, headers and body of a small JSON answer go out in a single write call."""
    protocol, transport = connect(protocol_class, app())
    protocol.data_received(b"GET /small HTTP/1.1\r\nHost: example.com\r\n\r\n")
    await passes()
    assert len(transport.writes) == 1
    answer = transport.writes[0]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-type: application/json" in head
    assert body == b'{"key":"uploads/abc/take.wav","fields":{"policy":"' + b"x" * 600 + b'"}}'


@pytest.mark.parametrize("protocol_class", PROTOCOLS)
@on_a_loop
async def test_keep_alive_answers_each_leave_in_one_write(protocol_class: type[asyncio.Protocol]) -> None:
    """Three requests on one connection: three writes, one per answer, in order."""
    protocol, transport = connect(protocol_class, app())
    for _ in range(3):
        protocol.data_received(b"GET /small HTTP/1.1\r\nHost: example.com\r\n\r\n")
        await passes()
    assert len(transport.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'"}}') for w in transport.writes)


@pytest.mark.parametrize("protocol_class", PROTOCOLS)
@on_a_loop
async def test_a_streaming_head_is_not_held_for_its_body(protocol_class: type[asyncio.Protocol]) -> None:
    """A response whose body comes later sends its head at the end of the loop pass, not with the body."""
    application = app()
    protocol, transport = connect(protocol_class, application)
    protocol.data_received(b"GET /streamed HTTP/1.1\r\nHost: example.com\r\n\r\n")
    await passes()
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(
        b"\r\n\r\n"
    )
    application.state.release.set()
    await passes()
    assert b"late body" in b"".join(transport.writes[1:])


@on_a_loop
async def test_closing_sends_the_held_write_first() -> None:
    transport = RecordingTransport()
    coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
    coalescing.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    coalescing.close()
    assert transport.events == ["write", "close"]
    assert transport.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    await passes()
    assert transport.events == ["write", "close"]  # the end-of-pass flush finds nothing left


@pytest.mark.parametrize("protocol_class", PROTOCOLS)
@on_a_loop
async def test_the_first_answer_of_a_pass_leaves_at_once_and_the_others_together_at_its_end(
    protocol_class: type[asyncio.Protocol],
) -> None:
    """Three requests read in the same pass: the first answer leaves as soon as it is made, the other
    two wait for the end of the pass and then leave, one write each.

    Under load a client then wakes once for several answers, and sends its next
    requests together: fewer wake-ups per request on both sides. Under light
    load every answer is the first of its pass.
    """
    application = app()
    connections = [
        connect(protocol_class, application, f"{name} ")[0] for name in ("first", "second", "third")
    ]
    for protocol in connections:
        protocol.data_received(b"GET /small HTTP/1.1\r\nHost: example.com\r\n\r\n")
    await passes()
    assert application.state.events == [
        "answered /small",
        "first write",
        "answered /small",
        "answered /small",
        "second write",
        "third write",
    ]


@on_a_loop
async def test_a_pass_sends_its_first_answer_at_once_and_holds_the_rest_until_it_ends() -> None:
    loop = asyncio.get_running_loop()
    first_wire, second_wire = RecordingTransport(), RecordingTransport()
    first, second = CoalescingTransport(first_wire, loop), CoalescingTransport(second_wire, loop)
    first.write(b"head 1 ")
    assert first_wire.writes == []
    first.write(b"body 1")
    assert first_wire.writes == [b"head 1 body 1"]  # the pass's first answer: at once, in one call
    second.write(b"head 2 ")
    second.write(b"body 2")
    assert second_wire.writes == [] and second.get_write_buffer_size() == 13
    await passes()
    assert second_wire.writes == [b"head 2 body 2"]
    second.write(b"head 3 ")
    second.write(b"body 3")
    assert second_wire.writes == [b"head 2 body 2", b"head 3 body 3"]  # a new pass: first again


@on_a_loop
async def test_writes_keep_their_order_and_large_ones_are_not_held() -> None:
    transport = RecordingTransport()
    coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
    big = b"b" * (HOLD_AT_MOST + 1)
    coalescing.write(big)
    assert transport.writes == [big]
    coalescing.write(b"head")
    coalescing.write(b"")  # nothing to send, nothing released
    assert transport.writes == [big]
    assert coalescing.get_write_buffer_size() == 4
    coalescing.writelines([b"one", b"two"])
    assert transport.writes == [big, b"headonetwo"]  # what was held goes first, in the same call
    assert coalescing.get_write_buffer_size() == 0
    await passes()
    assert transport.writes == [big, b"headonetwo"]  # the end-of-pass flush finds nothing left


@on_a_loop
async def test_a_connection_holds_at_most_16_kib() -> None:
    """A write that would hold more goes out at once, after what is held, in one call."""
    transport = RecordingTransport()
    coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
    coalescing.write(b"a" * HOLD_AT_MOST)
    assert transport.writes == []
    coalescing.write(b"b")
    assert transport.writes == [b"a" * HOLD_AT_MOST + b"b"]
    assert coalescing.get_write_buffer_size() == 0


@on_a_loop
async def test_an_aborted_connection_drops_the_held_write() -> None:
    transport = RecordingTransport()
    coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
    coalescing.write(b"head")
    assert coalescing.get_write_buffer_size() == 4
    coalescing.abort()
    await passes()
    assert transport.events == ["abort"]


def test_serving_uses_the_coalescing_protocol() -> None:
    """`soundpost serve` and the benchmark's targets are served with the coalescing httptools protocol."""
    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    assert uvicorn_options(parser.parse_args([]), "")["http"] is CoalescingHttpToolsProtocol


def test_a_client_waiting_for_100_continue_gets_it_before_sending_its_body() -> None:
    """The interim answer is held only until the end of the loop pass, so the client is not left waiting."""
    with (
        serve_asgi(lambda url: app()) as url,
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as conn,
    ):
        conn.settimeout(5)
        conn.sendall(
            b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        assert conn.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(b"{}")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"received":2}')


PARSERS = ["httptools", "h11"]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_head_over_the_bound_is_answered_431_and_the_connection_closed(parser: str) -> None:
    """A header that would take the head past MAX_REQUEST_HEAD gets 431 in the one error shape, then a close."""
    with serve_asgi(lambda url: app(), parser=parser) as url, raw_http.connect(url) as conn:
        conn.sendall(raw_http.get("/small", "X-Big: " + "a" * MAX_REQUEST_HEAD)[:-4])  # never ends
        status, headers, body = raw_http.read_response(conn)
        assert raw_http.closed_by_server(conn)
    assert status == 431
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_header_too_large"


@pytest.mark.parametrize("parser", PARSERS)
def test_a_16_mb_header_is_refused_before_it_is_read(parser: str) -> None:
    """The server stops at the bound: the client's 16 MB header is cut off by a close, not buffered."""
    with serve_asgi(lambda url: app(), parser=parser) as url, raw_http.connect(url) as conn:
        sent = 0
        with contextlib.suppress(OSError):  # the server closes, so sending the rest fails
            conn.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            for _ in range(16 * 64):
                conn.sendall(b"a" * 16384)
                sent += 16384
        assert sent < 16 * 1024 * 1024


@pytest.mark.parametrize("parser", PARSERS)
def test_heads_just_under_the_bound_are_served_one_after_another_on_a_connection(parser: str) -> None:
    """Each request's head is counted on its own: three large heads on one keep-alive connection all pass."""
    filler = "X-Filler: " + "f" * (MAX_REQUEST_HEAD - 200)
    with serve_asgi(lambda url: app(), parser=parser) as url, raw_http.connect(url) as conn:
        for _ in range(3):
            conn.sendall(raw_http.get("/small", filler))
            status, _, body = raw_http.read_response(conn)
            assert status == 200 and json.loads(body)["key"] == "uploads/abc/take.wav"


@pytest.mark.parametrize("parser", PARSERS)
def test_a_body_sent_with_its_head_does_not_count_toward_the_head(parser: str) -> None:
    """A small head followed at once by a 200 KB body in the same write is an ordinary request."""
    body = b"x" * 200_000
    head = f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with serve_asgi(lambda url: app(), parser=parser) as url, raw_http.connect(url) as conn:
        conn.sendall(head + body)
        status, _, answer = raw_http.read_response(conn)
    assert status == 200 and json.loads(answer) == {"received": len(body)}


def test_a_websocket_upgrade_request_is_answered_as_plain_http() -> None:
    """WebSockets are off: an upgrade request gets the route's ordinary answer, never a 101 over the wrapper."""
    with serve_asgi(lambda url: app()) as url, raw_http.connect(url) as conn:
        conn.sendall(
            raw_http.get(
                "/small",
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            )
        )
        status, headers, _ = raw_http.read_response(conn)
    assert status == 200
    assert "upgrade" not in headers
    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    assert uvicorn_options(parser.parse_args([]), "")["ws"] == "none"
