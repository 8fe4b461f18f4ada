"""Audio bytes made here, not downloaded: a real WAV from the stdlib, minimal valid FLAC and Ogg headers."""

from __future__ import annotations

import io
import math
import struct
import wave


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence lasting ``seconds``."""
    return wav_of(b"\x00\x00" * int(seconds * rate), rate)


def wav_of(samples: bytes, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV holding ``samples`` (random bytes make incompressible test audio)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples[: len(samples) // 2 * 2])
    return buffer.getvalue()


def tone(seconds: float, rate: int = 8000, pitch: float = 440.0) -> bytes:
    """A WAV holding a sine tone, so a player has something to play; one second is computed and repeated."""
    second = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(rate)
    )
    frames = int(seconds * rate)
    return wav_of((second * (frames // rate + 1))[: frames * 2], rate)


def tone_larger_than(size: int, rate: int = 44100) -> bytes:
    """A tone WAV a little larger than ``size`` bytes (for multipart uploads)."""
    return tone(size / (2 * rate) + 1, rate=rate)


def flac(seconds: int = 3, rate: int = 44100) -> bytes:
    """``fLaC`` and a STREAMINFO block saying ``seconds`` of stereo 16-bit audio (no frames follow)."""
    samples = seconds * rate
    # 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples
    packed = (rate << 44) | (1 << 41) | (15 << 36) | samples
    info = struct.pack(">HH", 4096, 4096) + b"\x00\x00\x00" * 2 + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def mp3_cbr(frames: int = 100) -> bytes:
    """MPEG-1 Layer III frames at 128 kbit/s, 44.1 kHz (silent payload); 26 ms each."""
    header = b"\xff\xfb\x90\x64"
    return (header + bytes(417 - len(header))) * frames


def not_audio() -> bytes:
    """The start of a PDF: what a renamed document looks like."""
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 4


def flac_with_empty_blocks(count: int = 65_535) -> bytes:
    """A valid FLAC header followed by ``count`` empty PADDING blocks: cheap to send, slow to parse."""
    streaminfo = flac()
    not_last = streaminfo[:4] + bytes([streaminfo[4] & 0x7F]) + streaminfo[5:]
    padding = bytes([0x01, 0, 0, 0])  # type 1 (PADDING), length 0, not the last block
    last = bytes([0x81, 0, 0, 0])
    return not_last + padding * (count - 1) + last
