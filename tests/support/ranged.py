"""A small object server for the decoding worker's unit tests: GET with Range and If-Match, PUT, a request log.

It stands in for presigned S3 URLs so the worker's reading (one streamed pass,
ranged seeks, the version check) can be watched request by request.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Store:
    objects: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, range)
    served: int = 0  # body bytes sent
    url: str = ""
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # what a GET of an object also answers

    def etag(self, name: str) -> str:
        return '"' + hashlib.md5(self.objects[name]).hexdigest() + '"'  # noqa: S324 (S3's ETag is an MD5)


def _handler(store: Store) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/").split("?")[0]
            store.requests.append(("GET", name, self.headers.get("Range", "")))
            data = store.objects.get(name)
            if data is None or self.headers.get("If-Match", store.etag(name)) != store.etag(name):
                self.send_response(404 if data is None else 412)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
            body = data[start:]
            self.send_response(206 if "Range" in self.headers else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            for header, value in store.headers.get(name, {}).items():
                self.send_header(header, value)
            self.end_headers()
            try:
                self.wfile.write(body)
                store.served += len(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader closed early (it seeked elsewhere): only what it took counts

        def do_PUT(self) -> None:
            name = self.path.lstrip("/").split("?")[0]
            store.requests.append(("PUT", name, ""))
            store.objects[name] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextlib.contextmanager
def serve_objects() -> Iterator[Store]:
    store = Store()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    store.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()
