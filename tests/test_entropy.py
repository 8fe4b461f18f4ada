"""Random ids come from the OS's random bytes, each byte handed out once, never shared with a fork."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from service.core import entropy
from service.core.entropy import RandomBytes


def test_a_token_is_hex_of_the_asked_length() -> None:
    token = entropy.token_hex(16)
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert token != entropy.token_hex(16)


def test_bytes_are_handed_out_in_order_and_never_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over page boundaries too: a short tail is dropped, not reused."""
    stream = bytes(range(256))
    reads: Iterator[int] = iter(range(0, 256, 10))

    def urandom(n: int) -> bytes:
        start = next(reads)
        return stream[start : start + n]

    monkeypatch.setattr(os, "urandom", urandom)
    source = RandomBytes(page=10)
    tokens = [bytes.fromhex(source.hex(3)) for _ in range(6)]
    # Pages of 10: three tokens use 9 bytes, the 10th is dropped, the next page starts fresh.
    assert tokens == [stream[0:3], stream[3:6], stream[6:9], stream[10:13], stream[13:16], stream[16:19]]


def test_a_token_longer_than_a_page_is_read_whole() -> None:
    source = RandomBytes(page=4)
    assert len(bytes.fromhex(source.hex(32))) == 32


def test_a_forked_child_does_not_hand_out_its_parents_bytes() -> None:
    entropy.token_hex(1)  # the parent holds a page with unread bytes
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, entropy.token_hex(16).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    assert from_child != entropy.token_hex(16)
