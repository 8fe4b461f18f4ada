"""The staging object read over a presigned GET, as a seekable file for the demuxer, hashed as it goes.

The worker never holds the whole object: reads stream from one HTTP response,
a seek far away opens a ranged one, and the SHA-256 covers the object's bytes
in order, so a demuxer that reads straight through (every format but an MP4
with its index at the end) reads each byte once. Given a multipart upload's part
sizes, the same in-order bytes also feed one SHA-256 per part.
"""

from __future__ import annotations

import base64
import hashlib
import io
import urllib.error
import urllib.request
from http.client import HTTPResponse

from service.core.checksums import user_metadata
from service.core.media_job import Stored

# A seek forward by at most this much reads and hashes the gap instead of opening a new request.
SKIP_BYTES = 64 * 1024
CHUNK = 64 * 1024
# The object's first bytes, kept for the few header checks made beside FFmpeg's and for demuxers
# that read ahead while probing and then seek back (FFmpeg's WAV demuxer reads 64 KiB, then returns
# to the data chunk): a seek back into them is served from memory, not by a second request.
HEAD_BYTES = 128 * 1024


def stored_from(headers: list[tuple[str, str]]) -> Stored:
    """Content-Type and the ``x-amz-meta-*`` headers of a GET, as a HEAD would have stated them."""
    content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
    return Stored(content_type, user_metadata(headers))


class SourceChanged(Exception):
    """The object is gone, or is not the version that was checked (If-Match failed)."""


class PartDigests:
    """One SHA-256 per consecutive range of the given sizes, fed the object's bytes in order."""

    def __init__(self, sizes: list[int]) -> None:
        self._left = list(sizes)  # bytes each part still expects
        self._done: list[str] = []
        self._current = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        """Hash ``data``, the bytes that follow the ones hashed so far, split where parts end."""
        view = memoryview(data)
        while view:
            self._close_finished()
            if not self._left:
                return  # bytes past the declared parts: the sizes' sum is checked against the object's
            take = min(self._left[0], len(view))
            self._current.update(view[:take])
            self._left[0] -= take
            view = view[take:]
        self._close_finished()

    def _close_finished(self) -> None:
        while self._left and self._left[0] == 0:
            self._done.append(base64.b64encode(self._current.digest()).decode())
            self._current = hashlib.sha256()
            self._left.pop(0)

    def digests(self) -> list[str]:
        """The finished parts' digests (all of them, once every byte was fed)."""
        self._close_finished()
        return list(self._done)


class RemoteObject(io.RawIOBase):
    """A read-only, seekable view of one object version behind a presigned GET URL."""

    def __init__(
        self, url: str, size: int, etag: str, timeout: float, part_sizes: list[int] | None = None
    ) -> None:
        super().__init__()
        self.url, self.size, self.etag, self.timeout = url, size, etag, timeout
        self.pos = 0
        self.bytes_read = 0
        self._body: HTTPResponse | None = None
        self._body_pos = 0  # where the open response would read next
        self._digest = hashlib.sha256()
        self.hashed = 0  # the digest covers bytes [0, hashed)
        self.parts = PartDigests(part_sizes) if part_sizes is not None else None
        self.head = b""
        self._stored: Stored | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def _open(self) -> HTTPResponse:
        headers = {"Range": f"bytes={self.pos}-", "If-Match": self.etag}
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310 (an http(s) URL we presigned)
        try:
            response: HTTPResponse = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 412):
                raise SourceChanged(f"the store answered {exc.code}") from None
            raise
        if response.status == 200 and self.pos:
            response.close()
            raise OSError("the store ignored the Range header")
        if self._stored is None:
            self._stored = stored_from(response.headers.items())
        return response

    def stored(self) -> Stored:
        """The object's type and metadata, from the first response (opened here if there is none yet)."""
        if self._stored is None:
            self._body_at_pos()
        assert self._stored is not None
        return self._stored

    @property
    def was_read(self) -> bool:
        return self._stored is not None

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _take(self, data: bytes, start: int) -> None:
        """Account for ``data`` read at ``start``: keep the head, extend the in-order digest."""
        end = start + len(data)
        if start == len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - start]
        if start <= self.hashed < end:
            fresh = memoryview(data)[self.hashed - start :]
            self._digest.update(fresh)
            if self.parts is not None:
                self.parts.update(fresh)
            self.hashed = end
        self.bytes_read += len(data)

    def _body_at_pos(self) -> HTTPResponse:
        """The open response, moved to ``pos``: read through a short gap ahead, else a new ranged GET."""
        gap = self.pos - self._body_pos
        if self._body is not None and 0 < gap <= SKIP_BYTES:
            while self._body_pos < self.pos:
                data = self._body.read(min(CHUNK, self.pos - self._body_pos))
                if not data:
                    raise OSError("the store ended the object early")
                self._take(data, self._body_pos)
                self._body_pos += len(data)
        elif self._body is None or gap:
            self._close_body()
            self._body = self._open()
            self._body_pos = self.pos
        return self._body

    def read(self, size: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        wanted = self.size - self.pos if size is None or size < 0 else min(size, self.size - self.pos)
        if self.pos < len(self.head) and (self._body is None or self.pos < self._body_pos):
            return self._reread(wanted)
        data = self._body_at_pos().read(wanted)
        if not data:
            raise OSError("the store ended the object early")
        self._take(data, self.pos)
        self.pos += len(data)
        self._body_pos = self.pos
        return data

    def _reread(self, wanted: int) -> bytes:
        """Bytes already read, again, from the kept head (up to where the open response stands)."""
        end = min(self.pos + wanted, len(self.head))
        if self._body is not None:
            end = min(end, self._body_pos)
        data = self.head[self.pos : end]
        self.pos = end
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Only moves the position: the next read decides whether a new request is needed."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, min(base + offset, self.size))
        return self.pos

    def digest(self) -> str:
        """Base64 SHA-256 of the whole object: reads whatever the demuxer skipped, once, from where the digest stopped."""
        if self.hashed < self.size:
            self.pos = self.hashed
            while self.pos < self.size:
                self.read(CHUNK)
        return base64.b64encode(self._digest.digest()).decode()

    def part_digests(self) -> list[str] | None:
        """Base64 SHA-256 of each part given, after ``digest()`` read every byte; None when none were given."""
        return None if self.parts is None else self.parts.digests()

    def close(self) -> None:
        self._close_body()
        super().close()
