"""What an upload declares about its bytes, named once for the signer, the store and promotion.

The declared SHA-256 and size travel as signed user metadata (``x-amz-meta-…``), because
every S3-compatible store keeps metadata while few enforce ``x-amz-checksum-sha256``:
promotion compares them with what it read, whichever store it is.
"""

from __future__ import annotations

# User metadata names (without the x-amz-meta- prefix) under which the signer pins the declaration.
SHA256_METADATA = "sha256"
SIZE_METADATA = "declared-size"


def declared_metadata(checksum: str | None, size: int | None) -> dict[str, str]:
    """The metadata an upload's signature pins: its SHA-256 and its exact size, where declared."""
    pinned: dict[str, str] = {}
    if checksum is not None:
        pinned[SHA256_METADATA] = checksum
    if size is not None:
        pinned[SIZE_METADATA] = str(size)
    return pinned
