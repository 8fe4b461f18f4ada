"""What the web process asks of the decoding worker and what it answers: one JSON line each way.

The worker (``service.media.worker``) is a separate program so that untrusted
media is parsed outside the web process; these Structs are the whole contract
between the two, kept here so neither side imports the other.
"""

from __future__ import annotations

import msgspec

# Every refusal the decoding pass can give, with the status confirm answers it with.
REFUSALS: dict[str, int] = {
    "not_audio": 422,
    "no_audio_stream": 422,
    "no_samples": 422,
    "corrupt": 422,
    "truncated": 422,
    "container_mismatch": 422,
    "too_long": 413,
    "too_complex": 422,
    "unsupported_type": 422,
}
# The rendition's media type (FLAC: lossless, about half of WAV's bytes, read by every ASR toolkit).
RENDITION_TYPE = "audio/flac"
RENDITION_RATE = 16_000
# The most min/max pairs a waveform holds: enough for a wide row, small enough to list beside it.
MAX_PEAK_PAIRS = 1600


class Job(msgspec.Struct, forbid_unknown_fields=True):
    """One staging object to decode: where to read it, where to write the rendition, and the bounds."""

    source_url: str  # a short-lived presigned GET of the staging object
    size: int
    etag: str  # the version that was checked; the worker reads it with If-Match
    # The canonical type the upload declared; "" when the web process did not HEAD the object: the
    # worker then takes it from the Content-Type its first read answers with (and ``filename``).
    declared: str
    max_seconds: float
    rendition_url: str | None = None  # a presigned PUT for the 16 kHz mono rendition, when renditions are on
    cpu_seconds: int = 30
    memory_bytes: int = 1024 * 1024 * 1024
    read_timeout: float = 10.0
    # The sizes of a multipart upload's parts, in order, when they declared checksums: one SHA-256 each.
    part_sizes: list[int] | None = None
    filename: str = ""  # the staging key's last segment, for the type an extension names


class Stored(msgspec.Struct):
    """What the store said about the object on the worker's first read: a HEAD the web process did not send."""

    content_type: str
    metadata: dict[str, str]


class Peaks(msgspec.Struct):
    """audiowaveform's JSON (version 2), as wavesurfer.js and peaks.js read it."""

    version: int
    channels: int
    sample_rate: int
    samples_per_pixel: int
    bits: int
    length: int
    data: list[int]


class AudioFacts(msgspec.Struct, rename="camel"):
    """What decoding learnt about the audio itself."""

    codec: str
    sample_rate: int
    channels: int
    bit_rate: int


class Decoded(msgspec.Struct, tag="decoded"):
    """The object decoded within its bounds: its facts, its waveform, and what was read."""

    duration_seconds: float
    audio: AudioFacts
    peaks: Peaks
    sha256: str  # base64 of the SHA-256 of every byte of the object, read once
    bytes_read: int
    rendition_bytes: int | None = None
    part_sha256: list[str] | None = None  # base64, one per ``Job.part_sizes``, hashed in the same read
    stored: Stored | None = None  # the object's type and metadata as its first read answered them


class Refused(msgspec.Struct, tag="refused"):
    """The object is not audio the service accepts; ``code`` is one of REFUSALS."""

    code: str
    detail: str
    stored: Stored | None = None  # as for Decoded, when the object was read at all


class Changed(msgspec.Struct, tag="changed"):
    """The staging object is gone or is no longer the version that was checked."""


Answer = Decoded | Refused | Changed

job_encoder = msgspec.json.Encoder()
job_decoder = msgspec.json.Decoder(Job)
answer_decoder = msgspec.json.Decoder(Answer)
