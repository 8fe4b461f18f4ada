"""What an upload declares about its bytes, named once for the signer, the store and promotion.

The declared SHA-256 and size travel as signed user metadata (``x-amz-meta-…``), because
every S3-compatible store keeps metadata while few enforce ``x-amz-checksum-sha256``:
promotion compares them with what it read, whichever store it is. A multipart upload's
parts declare theirs at completion, which keeps them beside the staging object (``PartsRecord``).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

# User metadata names (without the x-amz-meta- prefix) under which the signer pins the declaration.
SHA256_METADATA = "sha256"
SIZE_METADATA = "declared-size"
USER_METADATA_PREFIX = "x-amz-meta-"


def user_metadata(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An answer's ``x-amz-meta-*`` headers by their lowercased names without the prefix, as botocore reads them."""
    start = len(USER_METADATA_PREFIX)
    return {
        name.lower()[start:]: value
        for name, value in headers
        if name.lower().startswith(USER_METADATA_PREFIX)
    }


def declared_metadata(checksum: str | None, size: int | None) -> dict[str, str]:
    """The metadata an upload's signature pins: its SHA-256 and its exact size, where declared."""
    pinned: dict[str, str] = {}
    if checksum is not None:
        pinned[SHA256_METADATA] = checksum
    if size is not None:
        pinned[SIZE_METADATA] = str(size)
    return pinned


# The user metadata a multipart upload is created with when its parts declare SHA-256 checksums:
# promotion reads the parts record (``service.core.keys.parts_key``) only for such an object.
PART_CHECKSUMS_METADATA = "part-checksums"
PART_CHECKSUMS_SHA256 = "sha256"


class DeclaredPart(msgspec.Struct, frozen=True):
    """One assembled part as complete found it: its size from ListParts and the SHA-256 the client declared."""

    number: int
    size: int
    sha256: str


class PartsRecord(msgspec.Struct, frozen=True):
    """What a multipart upload's parts declared, in the order they were assembled."""

    parts: list[DeclaredPart]

    @property
    def sizes(self) -> list[int]:
        return [part.size for part in self.parts]


parts_encoder = msgspec.json.Encoder()
parts_decoder = msgspec.json.Decoder(PartsRecord)
