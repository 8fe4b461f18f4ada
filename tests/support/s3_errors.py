"""A loopback HTTP server that answers like an S3 that refuses: the error a test sets, as S3's XML.

moto and radosgw cannot be made to throttle, fail with a 5xx or see a skewed clock on
demand; this server answers every request with the error a test asks for (until
then, an empty listing with an ETag, and a create-only write of a key written
before refused, so the app's start-up checks pass).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMPTY_LISTING = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Name>bucket</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>"
    "<IsTruncated>false</IsTruncated></ListBucketResult>"
)


def error_xml(code: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{code} (test)</Message><RequestId>test</RequestId></Error>"
    )


class RefusingS3:
    """Set ``error`` to (HTTP status, S3 code) and every request gets that answer; None answers OK.

    ``body`` replaces the OK answer's (an empty listing) with any text, readable or not.
    """

    def __init__(self) -> None:
        self.error: tuple[int, str] | None = None
        self.body: str | None = None
        self.requests = 0
        self.created: set[str] = set()  # keys written with If-None-Match: *

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        self.requests += 1
        status, body = (
            (200, self.body or EMPTY_LISTING)
            if self.error is None
            else (self.error[0], error_xml(self.error[1]))
        )
        if status == 200 and handler.command == "PUT" and handler.headers.get("If-None-Match") == "*":
            if handler.path in self.created:
                status, body = 412, error_xml("PreconditionFailed")
            self.created.add(handler.path)
        data = body.encode()
        handler.send_response(status)
        handler.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port; yields the endpoint URL."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.answer(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test asserts on answers, not on this server's log

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
