"""What the first bytes of an object say it is: pure functions on bytes and a declared type.

The POST policy pins the Content-Type a browser may claim, but not what the bytes
are. Confirming an upload reads its first bytes and checks them against the
signature of the declared container, so a renamed PDF never passes as audio.
Duration comes from the container's header through mutagen, a well-kept tagging
library, rather than from parsers of our own.
"""

from __future__ import annotations

import io
import logging

import mutagen
import mutagen.flac
import mutagen.wave

logger = logging.getLogger("soundpost.sniff")

# Enough for every signature below; duration wants more (see HEAD_BYTES).
SIGNATURE_BYTES = 12
# How much of an object confirm reads: headers carrying the duration sit near the start.
HEAD_BYTES = 256 * 1024


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, and a layer (bits 1-2) other than ADTS's 00."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _adts_frame(head: bytes) -> bool:
    """An AAC ADTS frame header: 12 sync bits and layer 00."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def _signature_matches(head: bytes, canonical: str) -> bool:
    if canonical == "audio/wav":
        return head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE"
    if canonical == "audio/mpeg":
        return head.startswith(b"ID3") or _mpeg_frame(head)
    if canonical == "audio/aac":
        return head.startswith((b"ID3", b"ADIF")) or _adts_frame(head)
    if canonical == "audio/flac":
        return head.startswith(b"fLaC")
    if canonical in ("audio/ogg", "audio/opus"):
        return head.startswith(b"OggS")
    if canonical == "audio/webm":
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if canonical == "audio/mp4":
        return head[4:8] == b"ftyp"
    return False


def matches_type(head: bytes, canonical: str) -> bool:
    """Whether the first bytes of a file carry the signature of the container ``canonical`` names."""
    return _signature_matches(head[:SIGNATURE_BYTES], canonical)


# Containers whose header states the length (WAV's data chunk size, FLAC's STREAMINFO),
# so the start of the file alone gives the right answer.
_LENGTH_IN_HEADER = (mutagen.wave.WAVE, mutagen.flac.FLAC)


def duration_seconds(data: bytes, whole: bool = True) -> float | None:
    """The playing time the file's header gives, or None when it cannot be known from ``data``.

    With ``whole=False`` (``data`` is only the start of the file) only containers
    that state their length up front answer: for the others mutagen would count
    pages or frames, or divide the bytes by the bitrate, and under-report.
    """
    try:
        parsed = mutagen.File(io.BytesIO(data))
    except Exception as exc:
        logger.debug("no duration: %r", exc)
        return None
    if not whole and not isinstance(parsed, _LENGTH_IN_HEADER):
        return None
    length = getattr(getattr(parsed, "info", None), "length", None)
    if not isinstance(length, (int, float)) or length <= 0:
        return None
    return round(float(length), 3)
