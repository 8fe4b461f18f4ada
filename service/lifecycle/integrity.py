"""The integrity check: the bytes promotion read against what the upload declared when it was signed."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.checksums import SHA256_METADATA, SIZE_METADATA
from service.storage.client import Digest, ObjectFacts


@dataclass(frozen=True)
class Mismatch:
    code: str
    detail: str


def declares_checksum(metadata: dict[str, str]) -> bool:
    return bool(metadata.get(SHA256_METADATA))


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
