"""The decoding pass: demux, decode every packet, count the samples, draw the peaks, encode the rendition.

One pass over the object gives every fact the service states about it, taken
from the decoded audio rather than from what a header claims: the duration is
the number of decoded samples over the sample rate.
"""

from __future__ import annotations

import logging
import tempfile
import urllib.request
from dataclasses import dataclass, field
from typing import IO, Any

import av
import av.error
import numpy as np

from service.core import audio_types, sniff
from service.core.media_job import RENDITION_RATE, RENDITION_TYPE, AudioFacts, Decoded, Job, Refused
from service.media.mixdown import Mixdown
from service.media.source import RemoteObject
from service.media.waveform import Waveform

logger = logging.getLogger("soundpost.decode")

# FFmpeg's demuxer name(s) each declared type may turn out to be.
DEMUXERS: dict[str, frozenset[str]] = {
    "audio/wav": frozenset({"wav"}),
    "audio/mpeg": frozenset({"mp3"}),
    "audio/aac": frozenset({"aac"}),
    "audio/mp4": frozenset({"mov,mp4,m4a,3gp,3g2,mj2"}),
    "audio/webm": frozenset({"matroska,webm"}),
    "audio/ogg": frozenset({"ogg"}),
    "audio/opus": frozenset({"ogg"}),
    "audio/flac": frozenset({"flac"}),
}
# Containers whose header states the length (FLAC's STREAMINFO, MP4's sample table; WAV's data
# size is read apart): decoding much less than that means the file was cut short.
LENGTH_IN_HEADER = frozenset({"flac", "mov,mp4,m4a,3gp,3g2,mj2"})
# Packets that may fail to decode before the file counts as corrupt: a cut last frame, or one
# damaged frame at a join, still plays; more is damage a listener hears.
MAX_DECODE_ERRORS = 2
# The shortfall against a header's stated length that counts as truncation: the duration bound.
TRUNCATION_SECONDS, TRUNCATION_SHARE = 0.05, 0.01
MAX_CHANNELS = 32
MAX_SAMPLE_RATE = 384_000
# How much FFmpeg may read to find the streams before it must decide, and how much of a seek index
# it keeps: demuxers such as WAV's add an entry per packet (1 MiB an hour, which FFmpeg's default
# bound allows); the pass never seeks by time, so a small bound keeps an hour's memory a minute's.
DEMUXER_OPTIONS = {
    "probesize": str(1024 * 1024),
    "analyzeduration": str(5_000_000),
    "indexmem": str(16 * 1024),
}


class Refusal(Exception):
    """The object is refused; ``code`` is one of media_job.REFUSALS."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail

    def answer(self) -> Refused:
        return Refused(self.code, self.detail)


@dataclass
class Counts:
    """Running totals of one pass."""

    seconds: float = 0.0
    samples: int = 0
    errors: int = 0
    last_error: str = ""
    rates: set[int] = field(default_factory=set)


class Rendition:
    """The 16 kHz mono FLAC, encoded into a temporary file (disk, not memory) and PUT when done."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in upload())
        self.output: Any = av.open(self.file, "w", format="flac")
        self.stream: Any = self.output.add_stream("flac", rate=RENDITION_RATE, layout="mono")
        self.stream.codec_context.format = "s16"
        self.written = 0

    def add(self, frame: Any) -> None:
        frame.pts = self.written
        self.written += frame.samples
        for packet in self.stream.encode(frame):
            self.output.mux(packet)

    def upload(self, url: str, timeout: float) -> int:
        for packet in self.stream.encode(None):
            self.output.mux(packet)
        self.output.close()
        size = self.file.tell()
        self.file.seek(0)
        headers = {"Content-Type": RENDITION_TYPE, "Content-Length": str(size)}
        request = urllib.request.Request(url, data=self.file, headers=headers, method="PUT")  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (our presigned URL)
            response.read()
        self.file.close()
        return size


def _mismatch(source: RemoteObject, declared: str, found: str) -> Refusal:
    """``container_mismatch`` for audio of another container, ``not_audio`` for anything else."""
    source.seek(0)
    head = source.read(sniff.SIGNATURE_BYTES)
    if any(sniff.matches_type(head, other) for other in DEMUXERS if other != declared):
        return Refusal("container_mismatch", f"The file is {found}, not the declared {declared}.")
    return Refusal("not_audio", f"The file's contents are not {declared}.")


def _open(source: RemoteObject, declared: str) -> Any:
    try:
        container = av.open(source, "r", options=DEMUXER_OPTIONS, metadata_errors="ignore")
    except av.error.MemoryError:
        raise
    except av.error.FFmpegError as exc:
        source.seek(0)
        if sniff.matches_type(source.read(sniff.SIGNATURE_BYTES), declared):
            raise Refusal("corrupt", f"The file starts as {declared} but does not open ({exc}).") from None
        raise _mismatch(source, declared, "another kind of file") from None
    if container.format.name not in DEMUXERS.get(declared, frozenset()):
        found = container.format.long_name or container.format.name
        container.close()
        raise _mismatch(source, declared, found)
    return container


def _stream(container: Any) -> Any:
    if not container.streams.audio:
        raise Refusal("no_audio_stream", "The file holds no audio stream.")
    stream = container.streams.audio[0]
    context = stream.codec_context
    if context.channels > MAX_CHANNELS or not 0 < context.sample_rate <= MAX_SAMPLE_RATE:
        raise Refusal(
            "corrupt",
            f"{context.channels} channels at {context.sample_rate} Hz is not audio this service keeps.",
        )
    context.thread_count = 1  # one core per job: the CPU budget is per process
    return stream


def _decode_errors(counts: Counts, exc: Exception) -> None:
    counts.errors += 1
    counts.last_error = str(exc)
    if counts.errors > MAX_DECODE_ERRORS:
        raise Refusal("corrupt", f"The audio does not decode: {exc}.")


def _frames(container: Any, stream: Any, counts: Counts) -> Any:
    """Every decoded frame; a demuxer error ends the stream (counted), decoder errors are counted."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.MemoryError:
            raise
        except av.error.FFmpegError as exc:
            _decode_errors(counts, exc)
            packet = None
        if packet is None:  # a demuxer error: flush the decoder and stop
            yield from stream.codec_context.decode(None)
            return
        try:
            yield from packet.decode()
        except av.error.MemoryError:
            raise
        except av.error.FFmpegError as exc:
            _decode_errors(counts, exc)


def _stated_seconds(container: Any, source: RemoteObject) -> float | None:
    """The length the header states, where the container states one."""
    if container.format.name == "wav":
        return sniff.wav_stated_seconds(source.head)  # FFmpeg trims WAV's to the bytes present
    if container.format.name in LENGTH_IN_HEADER and container.duration:
        return float(container.duration) / 1_000_000
    return None


def _check_length(container: Any, source: RemoteObject, counts: Counts) -> None:
    stated = _stated_seconds(container, source)
    if stated is None:
        return
    if counts.seconds < stated - max(TRUNCATION_SECONDS, stated * TRUNCATION_SHARE):
        raise Refusal(
            "truncated", f"The header says {stated:.3f} s but only {counts.seconds:.3f} s of audio decode."
        )


def _declared(job: Job, source: RemoteObject) -> str:
    """The type to decode as: the job's, or (not HEADed first) the one the object was stored with."""
    if job.declared:
        return job.declared
    content_type = source.stored().content_type
    declared = audio_types.library_type(content_type, job.filename)
    if declared is None:
        raise Refusal("unsupported_type", f"{content_type!r} is not an accepted audio type.")
    return declared


def decode(job: Job, source: RemoteObject) -> Decoded:
    """Decode the whole object once; raise Refusal for anything the service does not accept."""
    container = _open(source, _declared(job, source))
    try:
        stream = _stream(container)
        counts = Counts()
        waveform = Waveform(RENDITION_RATE)
        mixdown = Mixdown(RENDITION_RATE)
        rendition = Rendition() if job.rendition_url else None

        def take(frames: list[Any]) -> None:
            for frame in frames:
                waveform.add(np.frombuffer(frame.planes[0], np.int16, frame.samples))
                if rendition is not None:
                    rendition.add(frame)

        for frame in _frames(container, stream, counts):
            counts.samples += frame.samples
            counts.seconds += frame.samples / frame.sample_rate
            counts.rates.add(frame.sample_rate)
            if counts.seconds > job.max_seconds:
                raise Refusal(
                    "too_long", f"The audio is longer than the {job.max_seconds:g} s this service accepts."
                )
            take(mixdown.add(frame))
        if counts.samples == 0:
            detail = f" ({counts.last_error})" if counts.last_error else ""
            raise Refusal("no_samples", f"No audio decodes from the file{detail}.")
        _check_length(container, source, counts)
        take(mixdown.finish())
        context = stream.codec_context
        bit_rate = context.bit_rate or stream.bit_rate or round(job.size * 8 / counts.seconds)
        facts = AudioFacts(
            codec=context.codec.canonical_name,
            sample_rate=context.sample_rate,
            channels=context.channels,
            bit_rate=int(bit_rate),
        )
        rendition_bytes = None
        if rendition is not None and job.rendition_url:
            rendition_bytes = rendition.upload(job.rendition_url, job.read_timeout)
    finally:
        container.close()
    return Decoded(
        duration_seconds=round(counts.seconds, 3),
        audio=facts,
        peaks=waveform.peaks(),
        sha256=source.digest(),
        bytes_read=source.hashed,
        rendition_bytes=rendition_bytes,
        part_sha256=source.part_digests(),
        stored=source.stored(),
    )
