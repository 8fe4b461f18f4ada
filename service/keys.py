"""Object keys: built by the server only, so a filename can never pick where bytes land.

A key is ``{prefix}{user_id}/{upload_id}/{filename}``:

- ``user_id`` is a fixed-length hash of (provider, subject): key-safe, stable
  across sign-ins, and never a prefix of another user's id, so users' keys can
  neither collide nor nest.
- ``upload_id`` starts with a reversed millisecond clock, so S3's ascending
  listing returns the newest upload first, then random bits so two uploads in
  the same millisecond never collide.
- ``filename`` is the user's name made safe: Unicode-normalised, no path
  separators or control characters, bounded in length, extension kept.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
import unicodedata

from service.entropy import token_hex

USER_ID_LENGTH = 26
UPLOAD_ID = re.compile(r"^[0-9]{13}[0-9a-f]{12}$")
USER_ID = re.compile(rf"^[a-z2-7]{{{USER_ID_LENGTH}}}$")
MAX_FILENAME_BYTES = 120
MAX_EXTENSION_CHARS = 10
_REVERSED_CLOCK_BASE = 10**13 - 1
_UNSAFE_RUN = re.compile(r"[^\w.\-]+")
_DOT_RUN = re.compile(r"\.{2,}")
_SEPARATOR = re.compile(r"[/\\]")


@functools.lru_cache(maxsize=4096)  # every signed-in request asks; base32 is pure Python (~8 µs)
def user_id(provider: str, subject: str) -> str:
    """A stable, key-safe id for a user of a provider (base32 of SHA-256, 130 bits)."""
    digest = hashlib.sha256(f"{provider}\x00{subject}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:USER_ID_LENGTH]


def new_upload_id(now: float | None = None) -> str:
    """A unique id whose ascending order is newest first."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{_REVERSED_CLOCK_BASE - millis:013d}{token_hex(6)}"


def upload_time(upload_id: str) -> float:
    """Seconds since the epoch at which an upload id was made."""
    return (_REVERSED_CLOCK_BASE - int(upload_id[:13])) / 1000


def split_extension(filename: str) -> tuple[str, str]:
    """(stem, extension): extension is "" or ".xyz" in lowercase; "v1.2" has none."""
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS or not ext.isalnum() or ext.isdigit():
        return filename, ""
    return stem, "." + ext.lower()


def safe_filename(filename: str, default_extension: str) -> str:
    """A filename that is safe as the last segment of an S3 key and in Content-Disposition.

    Keeps letters and digits of any script, ``.``, ``-`` and ``_``; every other run
    of characters (slashes, spaces, control characters, quotes) becomes ``-``.
    Only the last path segment counts, so ``../../x.wav`` is ``x.wav``.
    """
    name = unicodedata.normalize("NFKC", filename)
    name = _SEPARATOR.split(name)[-1]
    if not name.isprintable():  # every category "C" character is unprintable; most names have none
        name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    stem, ext = split_extension(name)
    stem = _DOT_RUN.sub(".", _UNSAFE_RUN.sub("-", stem)).strip(".-_ ")
    ext = ext or default_extension
    budget = MAX_FILENAME_BYTES - len(ext.encode())
    while len(stem.encode()) > budget:
        stem = stem[:-1]
    stem = stem.rstrip(".-_") or "audio"
    return stem + ext


def user_prefix(prefix: str, owner: str) -> str:
    """Everything a user owns lies under this prefix, and nothing else does."""
    return f"{prefix}{owner}/"


def build_key(prefix: str, owner: str, upload_id: str, filename: str) -> str:
    return f"{user_prefix(prefix, owner)}{upload_id}/{filename}"


def parse_key(prefix: str, key: str) -> tuple[str, str, str] | None:
    """(owner, upload_id, filename) for a key this service built, else None."""
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split("/")
    if len(parts) != 3 or not USER_ID.match(parts[0]) or not UPLOAD_ID.match(parts[1]) or not parts[2]:
        return None
    return parts[0], parts[1], parts[2]
