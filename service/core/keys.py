"""Object keys: built by the server only, so a filename can never pick where bytes land.

Everything lives under the configured prefix, in four areas:

- ``{prefix}incoming/{user_id}/{upload_id}/{filename}``: staging. The only keys a
  presigned POST or multipart upload is ever signed for; nothing here is trusted.
  Beside a multipart upload whose parts declared checksums, ``.parts.json``: what
  they declared (written by the server at completion, never by a browser).
- ``{prefix}library/{user_id}/{upload_id}/{filename}``: verified uploads. Only the
  server's own CopyObject writes here; no presigned request can. Beside each, the
  server's sidecars, named with a leading ``.`` (which no safe filename has), so
  they sort before the upload in its folder (``service.core.sidecars``).
- ``{prefix}decided/{upload_id}.json``: the record of an upload id, created once by
  the replica that claims its promotion: what became of it, and whether that was
  announced yet (a staging object that reuses a decided id is a replacement).
- ``{prefix}outbox/{upload_id}.json``: an announcement whose delivery failed, queued
  for the sweeper.

The parts:

- ``user_id`` is a fixed-length hash of (provider, subject): key-safe, stable
  across sign-ins, and never a prefix of another user's id, so users' keys can
  neither collide nor nest.
- ``upload_id`` starts with a reversed millisecond clock, so S3's ascending
  listing returns the newest upload first, then random bits so two uploads in
  the same millisecond never collide. It is the public id, the same in staging
  and in the library.
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
from typing import Literal, NamedTuple

from service.core.entropy import token_hex

USER_ID_LENGTH = 26
UPLOAD_ID = re.compile(r"^[0-9]{13}[0-9a-f]{12}$")
USER_ID = re.compile(rf"^[a-z2-7]{{{USER_ID_LENGTH}}}$")
MAX_FILENAME_BYTES = 120
MAX_EXTENSION_CHARS = 10
_REVERSED_CLOCK_BASE = 10**13 - 1
_UNSAFE_RUN = re.compile(r"[^\w.\-]+")
_DOT_RUN = re.compile(r"\.{2,}")
_SEPARATOR = re.compile(r"[/\\]")

Area = Literal["incoming", "library"]
STAGING: Area = "incoming"
LIBRARY: Area = "library"
OUTBOX = "outbox"
DECIDED = "decided"
RECORD_SUFFIX = ".json"
# The first character of a sidecar's name: never the first of a safe filename.
SIDECAR_MARK = "."
# Beside a staging object: the SHA-256 its multipart parts declared (``service.core.checksums``).
PARTS_NAME = ".parts.json"


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


def area_prefix(prefix: str, area: Area) -> str:
    """Where every user's staging (or library) objects lie."""
    return f"{prefix}{area}/"


def user_prefix(prefix: str, owner: str, area: Area = STAGING) -> str:
    """Everything a user has in one area lies under this prefix, and nothing of anyone else's does."""
    return f"{prefix}{area}/{owner}/"


def upload_prefix(prefix: str, owner: str, upload_id: str, area: Area = STAGING) -> str:
    """The one-object folder of an upload in an area."""
    return f"{prefix}{area}/{owner}/{upload_id}/"


def build_key(prefix: str, owner: str, upload_id: str, filename: str) -> str:
    """The staging key an upload is signed for: the only kind of key a browser may write."""
    return f"{upload_prefix(prefix, owner, upload_id)}{filename}"


def library_key(prefix: str, owner: str, upload_id: str, filename: str) -> str:
    """Where a verified upload lives; only the server's copy writes here."""
    return f"{upload_prefix(prefix, owner, upload_id, LIBRARY)}{filename}"


def sidecar_key(prefix: str, owner: str, upload_id: str, name: str) -> str:
    """A file the server keeps beside a library upload (its rendition, its facts and peaks)."""
    assert name.startswith(SIDECAR_MARK)
    return f"{upload_prefix(prefix, owner, upload_id, LIBRARY)}{name}"


def parts_key(prefix: str, owner: str, upload_id: str) -> str:
    """Where complete keeps what a multipart upload's parts declared: in the staging folder, expiring with it."""
    return f"{upload_prefix(prefix, owner, upload_id)}{PARTS_NAME}"


def parse_parts_key(prefix: str, key: str) -> ParsedKey | None:
    """The owner and upload id of a parts record (filename: its name), else None."""
    head = area_prefix(prefix, STAGING)
    parts = key[len(head) :].split("/") if key.startswith(head) else []
    if len(parts) != 3 or parts[2] != PARTS_NAME:
        return None
    if not USER_ID.match(parts[0]) or not UPLOAD_ID.match(parts[1]):
        return None
    return ParsedKey(parts[0], parts[1], parts[2])


def outbox_key(prefix: str, upload_id: str) -> str:
    """An announcement queued for the sweeper after its delivery failed."""
    return f"{prefix}{OUTBOX}/{upload_id}{RECORD_SUFFIX}"


def decided_key(prefix: str, upload_id: str) -> str:
    """The record of an upload id: the claim on its promotion, then what it became."""
    return f"{prefix}{DECIDED}/{upload_id}{RECORD_SUFFIX}"


def record_prefix(prefix: str, kind: str) -> str:
    """``{prefix}outbox/`` or ``{prefix}decided/``."""
    return f"{prefix}{kind}/"


def parse_record_key(prefix: str, kind: str, key: str) -> str | None:
    """The upload id an outbox (or decided) key names, else None."""
    head = record_prefix(prefix, kind)
    if not key.startswith(head) or not key.endswith(RECORD_SUFFIX):
        return None
    upload_id = key[len(head) : -len(RECORD_SUFFIX)]
    return upload_id if UPLOAD_ID.match(upload_id) else None


class ParsedKey(NamedTuple):
    """The parts of a key this service built: whose upload it is, its id, the file's name."""

    owner: str
    upload_id: str
    filename: str


def parse_area_key(prefix: str, key: str, area: Area) -> ParsedKey | None:
    """The owner, upload id and filename of a key this service built in ``area``, else None."""
    head = area_prefix(prefix, area)
    if not key.startswith(head):
        return None
    parts = key[len(head) :].split("/")
    if len(parts) != 3 or not USER_ID.match(parts[0]) or not UPLOAD_ID.match(parts[1]):
        return None
    if not parts[2] or parts[2].startswith(SIDECAR_MARK):
        return None
    return ParsedKey(parts[0], parts[1], parts[2])


def parse_key(prefix: str, key: str) -> ParsedKey | None:
    """The owner, upload id and filename of a staging key this service built, else None.

    Library keys do not parse here: a client that names a key (Uppy's routes, S3
    events) can only ever name a staging one.
    """
    return parse_area_key(prefix, key, STAGING)


def parse_library_key(prefix: str, key: str) -> ParsedKey | None:
    """The owner, upload id and filename of a library key, else None."""
    return parse_area_key(prefix, key, LIBRARY)
