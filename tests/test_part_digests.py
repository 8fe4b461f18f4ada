"""The decoding worker's per-part SHA-256: one digest per declared part, from the same in-order read as the whole file's."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator

import pytest

from service.media.source import CHUNK, SKIP_BYTES, PartDigests, RemoteObject
from tests.support.ranged import Store, serve_objects

DATA = os.urandom(3 * CHUNK + 1234)


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def expected(data: bytes, sizes: list[int]) -> list[str]:
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    return [sha(data[end - size : end]) for size, end in zip(sizes, ends, strict=True)]


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with serve_objects() as objects:
        objects.objects["take"] = DATA
        yield objects


def opened(store: Store, sizes: list[int] | None) -> RemoteObject:
    return RemoteObject(f"{store.url}/take", len(DATA), store.etag("take"), 5.0, sizes)


@pytest.mark.parametrize("feed", [1, 7, 100, 4096, len(DATA)])
def test_parts_split_wherever_the_fed_pieces_end(feed: int) -> None:
    """Pieces of any size, part boundaries inside them or on their edges: each part's own digest."""
    sizes = [100, 4096, 1, len(DATA) - 4197]
    digests = PartDigests(sizes)
    for start in range(0, len(DATA), feed):
        digests.update(DATA[start : start + feed])
    assert digests.digests() == expected(DATA, sizes)


def test_one_piece_covering_several_whole_parts_closes_each() -> None:
    sizes = [10, 20, 30]
    digests = PartDigests(sizes)
    digests.update(DATA[:60])
    assert digests.digests() == expected(DATA, sizes)


def test_parts_not_fed_yet_are_not_reported() -> None:
    """A digest is only given for a part whose every byte was fed: a short object has fewer."""
    digests = PartDigests([10, 20])
    digests.update(DATA[:15])
    assert digests.digests() == [sha(DATA[:10])]


def test_bytes_past_the_declared_parts_are_not_hashed_into_them() -> None:
    digests = PartDigests([10])
    digests.update(DATA[:25])
    assert digests.digests() == [sha(DATA[:10])]


def test_a_straight_read_in_odd_chunks_gives_every_parts_digest_with_the_whole_files(store: Store) -> None:
    """Reads of 1000 bytes: part boundaries (at 5 MiB-like odd offsets) fall inside read chunks."""
    sizes = [CHUNK + 17, CHUNK - 17, len(DATA) - 2 * CHUNK]
    source = opened(store, sizes)
    while source.read(1000):
        pass
    assert source.digest() == sha(DATA)
    assert source.part_digests() == expected(DATA, sizes)
    source.close()


def test_seeks_past_a_boundary_and_back_still_hash_each_part_once_in_order(store: Store) -> None:
    """A demuxer that jumps to the end (a new ranged GET) and back: the digests cover each byte once."""
    sizes = [CHUNK // 2, SKIP_BYTES * 2 + 3, len(DATA) - CHUNK // 2 - SKIP_BYTES * 2 - 3]
    source = opened(store, sizes)
    source.read(100)
    source.seek(-500, io.SEEK_END)  # far ahead: read but not hashed yet
    source.read(500)
    source.seek(50)  # back, inside what was already hashed
    source.read(CHUNK)
    source.seek(SKIP_BYTES // 2, io.SEEK_CUR)  # a short skip, read through and hashed
    source.read(10)
    assert source.digest() == sha(DATA)
    assert source.part_digests() == expected(DATA, sizes)
    source.close()


def test_without_part_sizes_there_are_no_part_digests(store: Store) -> None:
    source = opened(store, None)
    assert source.digest() == sha(DATA)
    assert source.part_digests() is None
    source.close()
