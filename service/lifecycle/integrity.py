"""The integrity check: the bytes promotion read against what the upload declared when it was signed."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.checksums import SHA256_METADATA, SIZE_METADATA
from service.storage.client import Digest, ObjectFacts, Storage


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


async def integrity_refusal(storage: Storage, facts: ObjectFacts) -> Mismatch | None:
    """Compare the staging object with its declaration: the size from HEAD, the SHA-256 from a full read.

    PLUG-IN POINT (issue 19): the audio worker streams the object once and returns its
    SHA-256 and byte count; its result replaces ``storage.digest`` here, so there is no
    second read. Until then the object is read once more, streamed in chunks and hashed
    off the event loop, and only when a checksum was declared.
    """
    size_only = check_integrity(
        {k: v for k, v in facts.metadata.items() if k == SIZE_METADATA}, Digest("", facts.size)
    )
    if size_only is not None or not declares_checksum(facts.metadata):
        return size_only
    return check_integrity(facts.metadata, await storage.digest(facts.key))
