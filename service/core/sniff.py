"""What the first bytes of an object say it is: pure functions on bytes and a declared type.

The POST policy pins the Content-Type a browser may claim, but not what the bytes
are. Confirming an upload reads its first bytes and checks them against the
signature of the declared container, so a renamed PDF never passes as audio.
The decoding worker (``service.media``) learns everything else by decoding; the
one header it reads itself is WAV's, whose stated length FFmpeg quietly trims to
the bytes present, hiding a truncation.
"""

from __future__ import annotations

# Enough for every signature below.
SIGNATURE_BYTES = 12


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


def wav_stated_seconds(head: bytes) -> float | None:
    """The length a WAV header states (data chunk size over byte rate), or None when it states none.

    Streaming writers leave the data size at 0 or 0xFFFFFFFF; those state nothing.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 20 <= len(head):
            byte_rate = int.from_bytes(head[offset + 16 : offset + 20], "little")
        if chunk == b"data":
            if not byte_rate or size in (0, 0xFFFFFFFF):
                return None
            return size / byte_rate
        offset += 8 + size + (size & 1)
    return None
