"""An "R2-like" store: a reverse proxy that answers POST Object as Cloudflare R2 does, and passes the rest.

R2 answers a browser POST-policy upload with ``501 NotImplemented: Presigned post
requests are not yet implemented``; everything else (presigned PUT, multipart, the
SDK's own calls) reaches the S3 behind it unchanged, Host header included, so
signatures made for the proxy's address verify upstream.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from service.devstack import S3Endpoint

NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
    b"<Message>Presigned post requests are not yet implemented</Message></Error>"
)
# Stripped by the variant that ignores conditional writes (as seaweedfs#8800 and minio#21526 report).
CONDITIONS = {"if-none-match", "if-match"}
# What MinIO leaves out of a lifecycle rule it was given (minio#19115).
ABORT_RULE = re.compile(rb"<AbortIncompleteMultipartUpload>.*?</AbortIncompleteMultipartUpload>", re.S)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def is_post_object(method: str, content_type: str) -> bool:
    """POST Object is the only POST with a form body; multipart uploads and DeleteObjects send XML or nothing."""
    return method == "POST" and content_type.lower().startswith("multipart/form-data")


CHECKSUMS_NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
    b"<Message>Checksums are not supported</Message></Error>"
)


def names_checksums(headers: dict[str, str]) -> bool:
    """A request carrying an S3 checksum or checksum algorithm header."""
    return any(name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")) for name in headers)


def _handler(
    upstream: str, ignore_conditions: bool, drop_abort_rule: bool, refuse_checksums: bool
) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if is_post_object(self.command, self.headers.get("Content-Type", "")):
                self._answer(501, {"Content-Type": "application/xml"}, NOT_IMPLEMENTED)
                return
            if refuse_checksums and names_checksums(dict(self.headers.items())):
                self._answer(501, {"Content-Type": "application/xml"}, CHECKSUMS_NOT_IMPLEMENTED)
                return
            connection = http.client.HTTPConnection(target.netloc, timeout=30)
            try:
                dropped_in = HOP_BY_HOP | (CONDITIONS if ignore_conditions else set())
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped_in}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                if drop_abort_rule and self.command == "GET" and "lifecycle" in self.path.partition("?")[2]:
                    data = ABORT_RULE.sub(b"", data)
                dropped = HOP_BY_HOP | ({"content-length"} if self.command != "HEAD" else set())
                kept = {k: v for k, v in answer.getheaders() if k.lower() not in dropped}
                self._answer(answer.status, kept, data)
            finally:
                connection.close()

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if all(
                name.lower() != "content-length" for name in headers
            ):  # a HEAD keeps the object's own length
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = _relay

    return Forward


@contextlib.contextmanager
def r2_like(
    upstream: S3Endpoint,
    *,
    ignore_conditions: bool = False,
    drop_abort_rule: bool = False,
    refuse_checksums: bool = False,
) -> Iterator[S3Endpoint]:
    """The upstream S3 behind an R2-like front on a free loopback port: same keys, its own URL.

    With ``ignore_conditions`` it also drops If-None-Match and If-Match, as a store that
    silently ignores conditional writes would; with ``drop_abort_rule`` lifecycle rules read
    back without their AbortIncompleteMultipartUpload, as MinIO keeps them; with
    ``refuse_checksums`` any request naming a checksum (algorithm) is a 501, as a store
    without S3's checksums answers.
    """
    handler = _handler(upstream.url, ignore_conditions, drop_abort_rule, refuse_checksums)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield S3Endpoint(
            f"http://127.0.0.1:{port}", upstream.access_key, upstream.secret_key, upstream.region
        )
    finally:
        server.shutdown()
        server.server_close()
