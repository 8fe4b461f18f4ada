"""Real encoder output in every accepted container, made by Debian's ffmpeg once per test session.

Each file is a sine tone of a known length, so a test can compare the service's
decoded duration with the truth. Variants cut it to half, to its header, or append
garbage, the damage real uploads suffer.
"""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.tools import require_tool

# name -> (declared type, file extension, ffmpeg's output options)
CONTAINERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "wav": ("audio/wav", ".wav", ("-c:a", "pcm_s16le")),
    "mp3": ("audio/mpeg", ".mp3", ("-c:a", "libmp3lame", "-b:a", "96k")),
    "aac": ("audio/aac", ".aac", ("-c:a", "aac", "-b:a", "64k", "-f", "adts")),
    "m4a": ("audio/mp4", ".m4a", ("-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart")),
    "webm": ("audio/webm", ".webm", ("-c:a", "libopus", "-b:a", "48k")),
    "opus": ("audio/opus", ".opus", ("-c:a", "libopus", "-b:a", "48k")),
    "ogg": ("audio/ogg", ".ogg", ("-c:a", "libvorbis", "-q:a", "2")),
    "flac": ("audio/flac", ".flac", ("-c:a", "flac")),
}
SECONDS = 4.0
_DIRECTORY = Path(tempfile.mkdtemp(prefix="soundpost-encoded-"))


@functools.cache
def encoded(name: str, seconds: float = SECONDS, rate: int = 48000, channels: int = 1) -> bytes:
    """A ``seconds``-long 440 Hz tone encoded as ``name`` (a key of CONTAINERS)."""
    require_tool(shutil.which("ffmpeg") is not None, "ffmpeg", "apt-get install ffmpeg")
    _, extension, options = CONTAINERS[name]
    target = _DIRECTORY / f"{name}-{seconds}-{rate}-{channels}{extension}"
    source = f"sine=frequency=440:duration={seconds}:sample_rate={rate}"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
            "-ac",
            str(channels),
            *options,
            str(target),
        ],
        check=True,
    )
    return target.read_bytes()


@functools.cache
def recording(seconds: float, noise: bool = False) -> bytes:
    """Opus in WebM as a live recorder writes it (MediaRecorder's shape: no Cues, no duration, 20 ms packets).

    ``noise`` makes it white noise, which no lossless rendition can shrink.
    """
    require_tool(shutil.which("ffmpeg") is not None, "ffmpeg", "apt-get install ffmpeg")
    target = _DIRECTORY / f"recording-{seconds}-{noise}.webm"
    source = (
        f"anoisesrc=duration={seconds}:sample_rate=48000:amplitude=0.5"
        if noise
        else f"sine=frequency=440:duration={seconds}:sample_rate=48000"
    )
    options = ("-c:a", "libopus", "-b:a", "32k", "-live", "1", "-f", "webm")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *options, str(target)], check=True
    )
    return target.read_bytes()


def header_only(data: bytes, name: str) -> bytes:
    """The file cut just after its header: WAV's up to its data chunk, ADTS's first frame header, else 200 bytes."""
    if name == "wav":
        return data[: data.index(b"data") + 8]
    return data[:7] if name == "aac" else data[:200]


def garbage(size: int = 16384) -> bytes:
    """Random bytes (fixed seed): what a broken client or a bad join leaves after the audio."""
    return random.Random(19).randbytes(size)


def declared(name: str) -> str:
    return CONTAINERS[name][0]


def filename(name: str, stem: str = "tone") -> str:
    return stem + CONTAINERS[name][1]
