"""Random hex for ids, from the OS's random bytes read a page at a time.

Each presign makes an upload id and a request id, a few random bytes each; a
``getrandom`` system call per id cost more than building the rest of the id.
The bytes come from ``os.urandom``, the source ``secrets`` uses, 4 KiB per read;
bytes are handed out once, and a forked child drops the bytes it inherited, so
two processes never share any.
"""

from __future__ import annotations

import os
import threading

PAGE = 4096


class RandomBytes:
    def __init__(self, page: int = PAGE) -> None:
        self.page = page
        self.lock = threading.Lock()
        self.buffer = b""
        self.used = 0

    def hex(self, nbytes: int) -> str:
        """``nbytes`` fresh random bytes as hex, like ``secrets.token_hex(nbytes)``."""
        with self.lock:
            if self.used + nbytes > len(self.buffer):
                self.buffer = os.urandom(max(self.page, nbytes))
                self.used = 0
            start = self.used
            self.used += nbytes
        return self.buffer[start : start + nbytes].hex()

    def forget(self) -> None:
        self.buffer = b""
        self.used = 0


_random = RandomBytes()
os.register_at_fork(after_in_child=_random.forget)
token_hex = _random.hex
