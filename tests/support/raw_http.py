"""HTTP/1.1 over a plain socket, for tests about connections themselves (keep-alive, closing, head limits)."""

from __future__ import annotations

import socket

from tests.support.servers import port_of


def connect(url: str, timeout: float = 5) -> socket.socket:
    """A connection to the server at ``url`` (127.0.0.1)."""
    conn = socket.create_connection(("127.0.0.1", port_of(url)))
    conn.settimeout(timeout)
    return conn


def get(path: str, *headers: str) -> bytes:
    """A keep-alive GET request's bytes, with any extra ``Name: value`` header lines."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response read off the connection: status, headers (lower-cased names), body by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection mid-response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def closed_by_server(conn: socket.socket) -> bool:
    """Whether the server has closed its end (a read gives end-of-file or a reset)."""
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
