"""Audio files for tests, generated with the standard library."""

from __future__ import annotations

import io
import math
import struct
import wave


def wav_bytes(seconds: float, rate: int = 8000, pitch: float = 440.0) -> bytes:
    """A mono 16-bit WAV holding a sine tone; one second is computed and repeated, so long files are cheap."""
    second = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(rate)
    )
    frames = int(seconds * rate)
    data = (second * (frames // rate + 1))[: frames * 2]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return buffer.getvalue()


def wav_of_at_least(size: int, rate: int = 44100) -> bytes:
    """A WAV a little larger than ``size`` bytes."""
    return wav_bytes(size / (2 * rate) + 1, rate=rate)
