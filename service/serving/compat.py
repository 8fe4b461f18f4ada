"""uvicorn's internal HTTP protocol classes, subclassed here and nowhere else (written against uvicorn 0.54.0).

Kept because uvicorn has no public way to send an answer's head and body in one write
(``service/serving/coalescing.py``; measured: see bench/README.md); tests/test_compat.py
fails when the methods and transport calls relied on here change.

The same subclasses bound the request line and headers (``MAX_REQUEST_HEAD``): httptools buffers a
header of any size, so the bytes of a request's head are counted before the parser sees them, and a
head over the bound is answered ``431`` and the connection closed. h11 counts the same way, and
``protocol_options`` raises h11's own buffer bound to match, so both parsers draw the line at one size.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.serving.coalescing import CoalescingTransport

WRITTEN_AGAINST = "0.54.0"

# Request line plus headers; nginx's default buffers allow 32 KiB of headers in all.
MAX_REQUEST_HEAD = 32 * 1024

logger = logging.getLogger("soundpost.serving")

_TOO_LARGE_BODY = (
    b'{"error":{"code":"request_header_too_large",'
    b'"detail":"The request line and headers must be at most %d bytes."}}' % MAX_REQUEST_HEAD
)
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"cache-control: no-store\r\n"
    b"x-content-type-options: nosniff\r\n"
    b"connection: close\r\n\r\n" % len(_TOO_LARGE_BODY)
) + _TOO_LARGE_BODY


def refuse_head(transport: asyncio.WriteTransport) -> None:
    """Answer a request whose head is over the bound with 431, and close the connection."""
    peer = transport.get_extra_info("peername")
    logger.warning("request head over %d bytes refused with 431 (client %s)", MAX_REQUEST_HEAD, peer)
    transport.write(TOO_LARGE)
    transport.close()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a ``CoalescingTransport``, with the request head bounded."""

    head_bytes = 0  # bytes of the current request's head fed to the parser so far
    reading_body = False  # the current request's head is complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        """Feed the parser at most what is left of the head's bound until the head is complete."""
        while data and not self.reading_body:
            room = MAX_REQUEST_HEAD - self.head_bytes
            if room <= 0:
                refuse_head(self.transport)
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.head_bytes += len(piece)
            super().data_received(piece)
            if data and self.transport.is_closing():
                return
        if data:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self.reading_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.reading_body = False
        self.head_bytes = 0
        super().on_message_complete()


class CoalescingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (where httptools is not installed), the same way."""

    head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        """h11 reads a request's head while the client's state is IDLE; count what it is fed meanwhile."""
        while data and self.conn.their_state is h11.IDLE:
            room = MAX_REQUEST_HEAD - self.head_bytes
            if room <= 0:
                refuse_head(self.transport)
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.head_bytes += len(piece)
            super().data_received(piece)
            if self.conn.their_state is not h11.IDLE:
                self.head_bytes = 0  # the head is complete; the next one counts from nothing
            if data and self.transport.is_closing():
                return
        if data:
            super().data_received(data)
