"""The integrity check: the bytes promotion read against what the upload declared when it was signed.

A simple upload declares its whole SHA-256 (and size) in signed metadata; a multipart
upload's parts declare theirs at completion, kept in a parts record beside the object.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.core.checksums import (
    PART_CHECKSUMS_METADATA,
    PART_CHECKSUMS_SHA256,
    SHA256_METADATA,
    SIZE_METADATA,
    PartsRecord,
)
from service.storage.client import Digest, ObjectFacts


@dataclass(frozen=True)
class Mismatch:
    code: str
    detail: str


def declares_checksum(metadata: dict[str, str]) -> bool:
    return bool(metadata.get(SHA256_METADATA))


def declares_part_checksums(metadata: dict[str, str]) -> bool:
    """A multipart upload created asking for part checksums: its parts record is to be read and checked."""
    return metadata.get(PART_CHECKSUMS_METADATA) == PART_CHECKSUMS_SHA256


PARTS_DIFFER = "checksum_mismatch"


def parts_refusal(record: PartsRecord | None, size: int) -> Mismatch | None:
    """Before any read: the parts record exists and its parts add up to the object."""
    if record is None:
        return Mismatch(
            PARTS_DIFFER,
            "The SHA-256 checksums declared for the upload's parts are missing; it was removed.",
        )
    declared = sum(record.sizes)
    if declared != size:
        return Mismatch(
            PARTS_DIFFER,
            f"The upload has {size} bytes, but the parts declared at completion add up to {declared}; "
            "it was removed.",
        )
    return None


def part_digests_refusal(record: PartsRecord, found: list[str] | None) -> Mismatch | None:
    """Each part's declared SHA-256 against the one the decoding worker computed while reading it."""
    if found is not None and found == [part.sha256 for part in record.parts]:
        return None
    numbers = [p.number for p, seen in zip(record.parts, found or [], strict=False) if p.sha256 != seen]
    which = f"part {numbers[0]}" if numbers else "a part"
    return Mismatch(
        PARTS_DIFFER,
        f"The SHA-256 of {which} differs from the checksum declared for it; the upload was removed.",
    )


def check_integrity(declared: dict[str, str], observed: Digest) -> Mismatch | None:
    """None when the object is what its signature declared, else which fact differs."""
    size = declared.get(SIZE_METADATA)
    if size is not None and size != str(observed.size):
        return Mismatch(
            "size_mismatch", f"The upload has {observed.size} bytes, not the {size} declared; it was removed."
        )
    checksum = declared.get(SHA256_METADATA)
    if checksum and checksum != observed.sha256:
        return Mismatch(
            "checksum_mismatch",
            "The upload's SHA-256 differs from the checksum declared for it; it was removed.",
        )
    return None


def size_refusal(facts: ObjectFacts) -> Mismatch | None:
    """The declared size against HEAD's length: checked before anything is read."""
    declared = {k: v for k, v in facts.metadata.items() if k == SIZE_METADATA}
    return check_integrity(declared, Digest("", facts.size))


def digest_refusal(facts: ObjectFacts, sha256: str, bytes_read: int) -> Mismatch | None:
    """The declared size and SHA-256 against what the decoding worker read, once, while it decoded."""
    if not declares_checksum(facts.metadata):
        return size_refusal(facts)
    return check_integrity(facts.metadata, Digest(sha256, bytes_read))
