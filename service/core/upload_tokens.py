"""The multipart upload id Soundpost hands out: S3's id and the upload's byte limit, sealed to its key.

S3 keeps no size limit for a multipart upload, and the metadata set at
CreateMultipartUpload cannot be read back before completion; so the limit
(the declared size, or the configured maximum) rides in the id Uppy sends
back on every call, with an HMAC over key, S3's id and limit that only this
service can make. A changed limit, another key or a made-up id fails the check:
the caller's upload is then "not yours", and no S3 call is needed to know it.
An upload whose parts declare SHA-256 checksums carries ``s`` after its limit, so
completion knows, from the id alone, to require one per part; ``k`` instead when the
store refused part checksums at creation, so they are kept for promotion alone
(neither signed on the parts nor named to the store at completion).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass
from functools import lru_cache

from service.core.secret import Secret

# S3 refuses parts under 5 MiB (but the last), and numbers parts from 1 to 10,000.
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10_000
_MAC_BYTES = 16
# After the limit: the parts declare SHA-256 checksums (absent in ids made before they could);
# KEPT_PARTS: they do, but the store refused them, so only promotion checks them.
SHA256_PARTS = "s"
KEPT_PARTS = "k"


@dataclass(frozen=True)
class SealedUpload:
    s3_upload_id: str
    max_bytes: int
    part_checksums: bool = False
    store_checksums: bool = False  # the store took the algorithm at creation: parts are signed with theirs

    def parts_needed(self, smallest_part: int = MIN_PART_BYTES) -> int:
        """The most parts an upload of at most ``max_bytes`` can have, in parts of at least ``smallest_part``."""
        return min(MAX_PARTS, max(1, math.ceil(self.max_bytes / smallest_part)))


@lru_cache(maxsize=4)
def _mac_key(secret: str) -> bytes:
    """A key of its own for these ids, derived from the session secret (never the secret itself)."""
    return hmac.new(secret.encode(), b"soundpost multipart upload id", hashlib.sha256).digest()


def _mac(secret: Secret, key: str, s3_upload_id: str, limit: str) -> str:
    message = "\0".join((key, s3_upload_id, limit)).encode()
    digest = hmac.new(_mac_key(str(secret)), message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seal(
    secret: Secret,
    key: str,
    s3_upload_id: str,
    max_bytes: int,
    part_checksums: bool = False,
    store_checksums: bool = True,
) -> str:
    """``{S3's id}.{max bytes}[s|k].{mac}``: S3's ids may hold dots, so it is read from the right."""
    mark = (SHA256_PARTS if store_checksums else KEPT_PARTS) if part_checksums else ""
    limit = f"{max_bytes}{mark}"
    return f"{s3_upload_id}.{limit}.{_mac(secret, key, s3_upload_id, limit)}"


def unseal(secret: Secret, key: str, upload_id: str) -> SealedUpload | None:
    """What ``seal`` sealed for this key, or None for anything this service did not hand out for it."""
    s3_upload_id, _, rest = upload_id.rpartition(".")
    s3_upload_id, _, limit = s3_upload_id.rpartition(".")
    digits = limit.removesuffix(SHA256_PARTS).removesuffix(KEPT_PARTS)
    if not s3_upload_id or not digits.isascii() or not digits.isdigit() or len(digits) > 12:
        return None
    if not hmac.compare_digest(rest.encode(), _mac(secret, key, s3_upload_id, limit).encode()):
        return None
    return SealedUpload(s3_upload_id, int(digits), digits != limit, limit.endswith(SHA256_PARTS))
