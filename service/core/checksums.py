"""What an upload declares about its bytes, named once for the signer, the store and promotion.

The declared SHA-256 and size travel as signed user metadata (``x-amz-meta-…``), because
every S3-compatible store keeps metadata while few enforce ``x-amz-checksum-sha256``:
promotion compares them with what it read, whichever store it is.
"""

from __future__ import annotations

import base64
import binascii

# User metadata names (without the x-amz-meta- prefix) under which the signer pins the declaration.
SHA256_METADATA = "sha256"
SIZE_METADATA = "declared-size"
SHA256_BYTES = 32


def is_sha256_base64(value: str) -> bool:
    """True for the base64 of exactly 32 bytes: what S3 expects in ``x-amz-checksum-sha256``."""
    if len(value) != 44:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == SHA256_BYTES
    except (binascii.Error, ValueError):
        return False


def declared_metadata(checksum: str | None, size: int | None) -> dict[str, str]:
    """The metadata an upload's signature pins: its SHA-256 and its exact size, where declared."""
    pinned: dict[str, str] = {}
    if checksum is not None:
        pinned[SHA256_METADATA] = checksum
    if size is not None:
        pinned[SIZE_METADATA] = str(size)
    return pinned
