"""The sealed multipart upload id: S3's id and the byte limit, bound to the key by a MAC only the server makes."""

from __future__ import annotations

import pytest

from service.core.secret import Secret
from service.core.upload_tokens import MAX_PARTS, MIN_PART_BYTES, SealedUpload, seal, unseal

SECRET = Secret("s" * 40)
KEY = "uploads/incoming/user/0000000000000aaaaaaaaaaaa/a.wav"


@pytest.mark.parametrize("s3_id", ["2~abc.def_ghi", "VXBsb2FkIElE", "a.b.c.d"])
def test_an_id_unseals_to_what_was_sealed_whatever_s3s_id_holds(s3_id: str) -> None:
    """S3's ids may hold dots; the sealed fields are read from the right."""
    assert unseal(SECRET, KEY, seal(SECRET, KEY, s3_id, 1000)) == SealedUpload(s3_id, 1000)


@pytest.mark.parametrize(
    "change",
    [
        lambda token: token.replace(".1000.", ".2000."),
        lambda token: "other" + token,
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
        lambda token: token.rsplit(".", 2)[0],
        lambda token: token + "é",
        lambda token: token.replace(".1000.", ".²."),
    ],
    ids=["raised-limit", "other-s3-id", "changed-mac", "bare-s3-id", "non-ascii", "non-ascii-digits"],
)
def test_a_changed_id_does_not_unseal(change) -> None:  # type: ignore[no-untyped-def]
    assert unseal(SECRET, KEY, change(seal(SECRET, KEY, "upload", 1000))) is None


def test_an_id_sealed_for_another_key_or_secret_does_not_unseal() -> None:
    token = seal(SECRET, KEY, "upload", 1000)
    assert unseal(SECRET, KEY.replace("a.wav", "b.wav"), token) is None
    assert unseal(Secret("t" * 40), KEY, token) is None


@pytest.mark.parametrize(
    ("max_bytes", "parts"),
    [
        (1, 1),
        (MIN_PART_BYTES, 1),
        (MIN_PART_BYTES + 1, 2),
        (500 * 2**20, 100),
        (5 * 2**30, 1024),
        (10**12, MAX_PARTS),
    ],
)
def test_the_parts_an_upload_needs_follow_s3s_smallest_part_and_largest_count(
    max_bytes: int, parts: int
) -> None:
    assert SealedUpload("u", max_bytes).parts_needed() == parts


def test_an_upload_in_parts_smaller_than_s3s_needs_more_of_them() -> None:
    """Where tests allow parts under 5 MiB, an upload may use as many parts as that size needs."""
    assert SealedUpload("u", 10 * 1024).parts_needed(1024) == 10
    assert SealedUpload("u", 10 * 1024).parts_needed() == 1


def test_an_upload_asking_for_part_checksums_says_so_in_its_id_and_the_mac_covers_it() -> None:
    """Completion learns from the id alone that every part must name its SHA-256; dropping the mark breaks the id."""
    token = seal(SECRET, KEY, "upload", 1000, part_checksums=True)
    assert unseal(SECRET, KEY, token) == SealedUpload(
        "upload", 1000, part_checksums=True, store_checksums=True
    )
    kept = seal(SECRET, KEY, "upload", 1000, part_checksums=True, store_checksums=False)
    assert unseal(SECRET, KEY, kept) == SealedUpload(
        "upload", 1000, part_checksums=True, store_checksums=False
    )
    assert unseal(SECRET, KEY, kept.replace(".1000k.", ".1000s.")) is None  # the store's answer is sealed too
    assert unseal(SECRET, KEY, token.replace(".1000s.", ".1000.")) is None
    plain = seal(SECRET, KEY, "upload", 1000)
    assert unseal(SECRET, KEY, plain.replace(".1000.", ".1000s.")) is None
    assert unseal(SECRET, KEY, plain) == SealedUpload("upload", 1000, part_checksums=False)
