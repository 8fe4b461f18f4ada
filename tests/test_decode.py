"""The decoding pass and its worker: real encoder output in every container, damaged and crafted files.

The pass reads from a small local object server (tests/support/ranged.py) through
the same presigned-URL reader the worker uses against S3.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator

import av
import pytest

from service.core.media_job import (
    MAX_PEAK_PAIRS,
    Changed,
    Decoded,
    Job,
    Refused,
    Stored,
    answer_decoder,
    job_encoder,
)
from service.lifecycle import forking
from service.media import decode
from service.media.source import RemoteObject
from tests.support import audio_samples
from tests.support.encoded import CONTAINERS, SECONDS, declared, encoded, garbage, header_only, recording
from tests.support.ranged import Store, serve_objects

CODECS = {
    "wav": "pcm_s16le",
    "mp3": "mp3",
    "aac": "aac",
    "m4a": "aac",
    "webm": "opus",
    "opus": "opus",
    "ogg": "vorbis",
    "flac": "flac",
}


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with serve_objects() as objects:
        yield objects


def bound(seconds: float) -> float:
    """The accuracy the service promises: 50 ms or 1 %, whichever is larger."""
    return max(0.05, seconds * 0.01)


def run(store: Store, data: bytes, kind: str, max_seconds: float = 3600.0, rendition: bool = False) -> object:
    """Decode ``data`` declared as ``kind`` in this process: the Decoded answer, or the Refused one."""
    name = hashlib.sha256(data + kind.encode()).hexdigest()
    store.objects[name] = data
    job = Job(
        f"{store.url}/{name}",
        len(data),
        store.etag(name),
        kind,
        max_seconds,
        rendition_url=f"{store.url}/{name}.flac" if rendition else None,
    )
    source = RemoteObject(job.source_url, job.size, job.etag, 5.0)
    try:
        return decode.decode(job, source)
    except decode.Refusal as refusal:
        return refusal.answer()
    finally:
        source.close()


def decoded(answer: object) -> Decoded:
    assert isinstance(answer, Decoded), answer
    return answer


def refused(answer: object) -> str:
    assert isinstance(answer, Refused), answer
    return answer.code


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_every_container_decodes_to_its_true_length_and_facts(store: Store, name: str) -> None:
    """Four seconds of tone in each container: duration within the bound, FFmpeg's codec name, the stream's format."""
    data = encoded(name)
    answer = decoded(run(store, data, declared(name)))
    assert abs(answer.duration_seconds - SECONDS) <= bound(SECONDS), answer.duration_seconds
    assert (answer.audio.codec, answer.audio.sample_rate, answer.audio.channels) == (CODECS[name], 48000, 1)
    assert answer.audio.bit_rate > 0


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_the_digest_and_byte_count_cover_the_whole_object(store: Store, name: str) -> None:
    """SHA-256 (base64) and the byte count of the object, as the integrity check compares them."""
    data = encoded(name)
    answer = decoded(run(store, data, declared(name)))
    assert answer.sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert answer.bytes_read == len(data)


def test_a_webm_is_read_in_one_streamed_request(store: Store) -> None:
    """A streaming container is read straight through: one GET, nothing read twice (FFmpeg's size probes are free)."""
    data = encoded("webm", seconds=20.0)
    before = len(store.requests)
    decoded(run(store, data, "audio/webm"))
    assert [r[0] for r in store.requests[before:]] == ["GET"]


def test_a_wav_is_read_in_one_streamed_request(store: Store) -> None:
    """FFmpeg reads ahead while probing a WAV, then seeks back to its data: served from the kept head, not a second GET."""
    data = audio_samples.wav(20.0)
    before = len(store.requests)
    answer = decoded(run(store, data, "audio/wav"))
    assert [r[0] for r in store.requests[before:]] == ["GET"]
    assert answer.bytes_read == len(data) and abs(answer.duration_seconds - 20.0) <= bound(20.0)


def test_a_long_recording_keeps_its_peaks_bounded_and_its_length_exact(store: Store) -> None:
    """Ten minutes: at most MAX_PEAK_PAIRS pairs of 8-bit values, the tone's swing visible, exact length."""
    answer = decoded(run(store, encoded("opus", seconds=600.0), "audio/opus"))
    peaks = answer.peaks
    assert abs(answer.duration_seconds - 600.0) <= bound(600.0)
    assert (peaks.version, peaks.channels, peaks.bits, peaks.sample_rate) == (2, 1, 8, 16000)
    assert 0 < peaks.length <= MAX_PEAK_PAIRS and len(peaks.data) == 2 * peaks.length
    assert peaks.length * peaks.samples_per_pixel >= 600 * 16000 * 0.99
    assert all(-128 <= v <= 127 for v in peaks.data)
    assert min(peaks.data) < -4 and max(peaks.data) > 4  # ffmpeg's sine is at 1/8 of full scale


def test_the_demuxer_keeps_a_small_seek_index_however_long_the_recording() -> None:
    """Without Cues FFmpeg indexes the packets as it reads (up to 1 MiB a stream by default); the pass never
    seeks by time, so it keeps the index to DEMUXER_OPTIONS' bound: an hour holds what a minute does."""

    def entries(data: bytes, options: dict[str, str]) -> int:
        with av.open(io.BytesIO(data), "r", options=options) as container:
            stream = container.streams.audio[0]
            for _ in container.demux(stream):
                pass
            return len(stream.index_entries)

    bound = int(decode.DEMUXER_OPTIONS["indexmem"]) // 24  # sizeof(AVIndexEntry)
    data = recording(120.0)
    assert entries(data, decode.DEMUXER_OPTIONS) <= bound < entries(data, {})


# Runs the worker as promotion does, then reports the high-water mark of its own resident memory
# (VmHWM; ru_maxrss would count the parent's memory too, copied by fork before exec).
PEAK_PROBE = (
    "import runpy, sys\n"
    "try:\n    runpy.run_module('service.media.worker', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
)


def peak_kib(store: Store, data: bytes, name: str) -> int:
    """The worker's peak resident memory in KiB for one job with the rendition, after checking its answer."""
    store.objects[name] = data
    job = Job(
        f"{store.url}/{name}",
        len(data),
        store.etag(name),
        "audio/webm",
        3600.0,
        rendition_url=f"{store.url}/{name}.flac",
    )
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE], input=job_encoder.encode(job), capture_output=True, check=True
    )
    answer = answer_decoder.decode(done.stdout)
    assert isinstance(answer, Decoded) and answer.rendition_bytes == len(store.objects[name + ".flac"])
    return int(done.stderr.split()[-1])


def test_the_worker_needs_the_same_memory_for_five_minutes_as_for_twenty_seconds(store: Store) -> None:
    """Streamed, not buffered: five minutes of noise (a 9 MB rendition that cannot compress, 55 MB decoded
    at 48 kHz) peak within 4 MiB of twenty seconds, so neither the rendition, the decoded audio nor the
    peaks are held whole."""
    short = peak_kib(store, recording(20.0, noise=True), "short.webm")
    long = peak_kib(store, recording(300.0, noise=True), "long.webm")
    assert len(store.objects["long.webm.flac"]) > 8 << 20
    assert long - short < 4 << 10, (short, long)


# Header-stated lengths (WAV, FLAC) or indexes (MP4) or setup headers (Vorbis) make a half file fail;
# framed streams (MP3, ADTS, Opus in Ogg or WebM) are a shorter, valid file.
HALF_REFUSED = {"wav": "truncated", "flac": "truncated", "m4a": "truncated"}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_a_file_cut_in_half_is_refused_or_has_the_length_of_what_decodes(store: Store, name: str) -> None:
    data = encoded(name)
    answer = run(store, data[: len(data) // 2], declared(name))
    if name in HALF_REFUSED:
        assert refused(answer) == HALF_REFUSED[name]
    else:
        assert 1.0 < decoded(answer).duration_seconds < SECONDS - 1.0


HEADER_REFUSED = {
    "wav": "no_samples",
    "mp3": "corrupt",
    "aac": "corrupt",
    "m4a": "no_audio_stream",  # the sample table is cut off: no stream can be set up
    "webm": "corrupt",
    "opus": "corrupt",
    "ogg": "corrupt",
    "flac": "corrupt",
}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_a_file_cut_to_its_header_is_refused(store: Store, name: str) -> None:
    data = encoded(name)
    assert refused(run(store, header_only(data, name), declared(name))) == HEADER_REFUSED[name]


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_garbage_after_the_audio_is_ignored_by_containers_and_refused_in_bare_streams(
    store: Store, name: str
) -> None:
    """Containers end where their framing says; MP3 and ADTS read the garbage as broken frames."""
    answer = run(store, encoded(name) + garbage(), declared(name))
    if name in ("mp3", "aac"):
        assert refused(answer) == "corrupt"
    else:
        assert abs(decoded(answer).duration_seconds - SECONDS) <= bound(SECONDS)


def test_a_wav_declared_as_mp3_is_a_container_mismatch(store: Store) -> None:
    assert refused(run(store, encoded("wav"), "audio/mpeg")) == "container_mismatch"


def test_an_ogg_vorbis_declared_as_webm_is_a_container_mismatch(store: Store) -> None:
    assert refused(run(store, encoded("ogg"), "audio/webm")) == "container_mismatch"


def test_a_document_declared_as_audio_is_not_audio(store: Store) -> None:
    assert refused(run(store, audio_samples.not_audio(), "audio/wav")) == "not_audio"


def test_a_video_without_sound_has_no_audio_stream(store: Store) -> None:
    """An MP4 holding one video stream, declared audio/mp4."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for i in range(10):
            frame = av.VideoFrame(32, 32, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert refused(run(store, buffer.getvalue(), "audio/mp4")) == "no_audio_stream"


def test_audio_longer_than_the_maximum_is_refused_while_decoding(store: Store) -> None:
    assert refused(run(store, encoded("webm"), "audio/webm", max_seconds=2.0)) == "too_long"


def _wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def test_a_header_claiming_a_billion_samples_per_second_is_refused(store: Store) -> None:
    data = _wav_header(10**9, 1, 4000) + bytes(4000)
    assert refused(run(store, data, "audio/wav")) == "corrupt"


def test_a_header_claiming_255_channels_is_refused(store: Store) -> None:
    data = _wav_header(8000, 255, 255 * 2 * 100) + bytes(255 * 2 * 100)
    assert refused(run(store, data, "audio/wav")) == "corrupt"


def test_an_hour_declared_in_one_kilobyte_is_truncated(store: Store) -> None:
    data = _wav_header(8000, 1, 3600 * 8000 * 2) + bytes(1000)
    assert refused(run(store, data, "audio/wav")) == "truncated"


def test_a_flac_of_empty_metadata_blocks_has_no_samples(store: Store) -> None:
    assert refused(run(store, audio_samples.flac_with_empty_blocks(), "audio/flac")) == "no_samples"


def test_an_mp4_declaring_a_huge_moov_is_refused(store: Store) -> None:
    """A moov box claiming 2 GiB in a file of a few kilobytes."""
    ftyp = struct.pack(">I", 20) + b"ftypM4A " + struct.pack(">I", 0) + b"M4A "
    data = ftyp + struct.pack(">I", 0x7FFFFFF0) + b"moov" + bytes(4096)
    assert refused(run(store, data, "audio/mp4")) == "no_audio_stream"


def test_the_speech_rendition_is_16_khz_mono_flac_of_the_same_length(store: Store) -> None:
    """Written by the pass itself to the PUT URL: lossless, 16 kHz, one channel, the upload's length."""
    data = encoded("flac", rate=44100, channels=2)
    answer = decoded(run(store, data, "audio/flac", rendition=True))
    name = hashlib.sha256(data + b"audio/flac").hexdigest() + ".flac"
    rendition = store.objects[name]
    assert answer.rendition_bytes == len(rendition)
    with av.open(io.BytesIO(rendition), "r") as container:
        stream = container.streams.audio[0]
        assert (container.format.name, stream.codec_context.sample_rate, stream.codec_context.channels) == (
            "flac",
            16000,
            1,
        )
        samples: int = sum(frame.samples for frame in container.decode(stream))
    assert abs(samples / 16000 - SECONDS) <= bound(SECONDS)
    assert answer.audio.channels == 2 and answer.audio.sample_rate == 44100


def worker(job: Job) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service.media.worker"],
        input=job_encoder.encode(job),
        capture_output=True,
        check=False,
    )


def test_the_worker_answers_one_json_line_under_its_limits(store: Store) -> None:
    """The program the web process runs: a job in, the decoded facts out, within a 256 MiB address space."""
    data = encoded("webm")
    store.objects["w.webm"] = data
    job = Job(
        f"{store.url}/w.webm", len(data), store.etag("w.webm"), "audio/webm", 60.0, memory_bytes=256 << 20
    )
    done = worker(job)
    assert done.returncode == 0, done.stderr
    answer = answer_decoder.decode(done.stdout)
    assert isinstance(answer, Decoded) and abs(answer.duration_seconds - SECONDS) <= bound(SECONDS)


@pytest.mark.parametrize(
    ("stored_as", "outcome"), [("audio/webm", "decoded"), ("text/plain", "unsupported_type")]
)
def test_told_no_type_the_worker_decodes_as_stored_and_answers_the_type_and_metadata(
    store: Store, stored_as: str, outcome: str
) -> None:
    """Confirm skips the HEAD: the worker's first read states the object's type and metadata, as HEAD would."""
    data = encoded("webm")
    store.objects["s.webm"] = data
    store.headers["s.webm"] = {"Content-Type": stored_as, "x-amz-meta-declared-size": str(len(data))}
    job = Job(f"{store.url}/s.webm", len(data), store.etag("s.webm"), "", 60.0, filename="s.webm")
    done = worker(job)
    assert done.returncode == 0, done.stderr
    answer = answer_decoder.decode(done.stdout)
    assert isinstance(answer, Decoded | Refused)
    assert answer.stored == Stored(stored_as, {"declared-size": str(len(data))})
    assert (answer.code if isinstance(answer, Refused) else "decoded") == outcome


def test_the_worker_says_changed_when_the_object_is_not_the_checked_version(store: Store) -> None:
    """If-Match fails: the object was replaced after it was checked, so the promotion looks again."""
    data = encoded("webm")
    store.objects["c.webm"] = data
    job = Job(f"{store.url}/c.webm", len(data), '"not-this-version"', "audio/webm", 60.0)
    done = worker(job)
    assert done.returncode == 0, done.stderr
    assert isinstance(answer_decoder.decode(done.stdout), Changed)


def test_the_web_process_never_imports_the_decoder() -> None:
    """The app, its routes and the sweeper load without av (import-linter enforces it statically too)."""
    probe = "import sys, service.__main__, service.app, service.lifecycle.sweeper; print('av' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    assert done.stdout.strip() == b"False"


def test_a_job_runs_below_the_web_process_priority() -> None:
    """Decoding is batch work: a job's limits lower its priority, so a busy machine still serves requests first."""
    probe = (
        "import os; from service.media.worker import limit; before = os.nice(0); "
        "limit(60, 1 << 30); print(before, os.nice(0))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    before, after = map(int, done.stdout.split())
    assert after == min(19, before + 10)  # the kernel's lowest priority is 19


def test_a_forked_job_past_its_cpu_budget_is_stopped_by_the_kernel(store: Store) -> None:
    """One CPU second for half an hour of Opus (about 2 s to decode here): the job ends on SIGXCPU.

    Promotion refuses such a file as too_complex.
    """
    data = encoded("opus", seconds=1800.0)
    store.objects["long.opus"] = data
    job = Job(
        f"{store.url}/long.opus", len(data), store.etag("long.opus"), "audio/opus", 7200.0, cpu_seconds=1
    )
    status, answer = asyncio.run(forking.run_job(job))
    assert (status, answer) == (-signal.SIGXCPU, b"")


def test_a_cancelled_forked_job_is_killed_and_the_fork_server_serves_the_next(store: Store) -> None:
    """A timeout cancels the wait and kills that job's process; the next job decodes normally."""
    data = encoded("opus", seconds=600.0)
    store.objects["slow.opus"] = data
    slow = Job(f"{store.url}/slow.opus", len(data), store.etag("slow.opus"), "audio/opus", 7200.0)

    async def cut_short() -> None:
        async with asyncio.timeout(0.5):
            await forking.run_job(slow)

    with pytest.raises(TimeoutError):
        asyncio.run(cut_short())
    store.objects["next.webm"] = encoded("webm")
    quick = Job(f"{store.url}/next.webm", len(encoded("webm")), store.etag("next.webm"), "audio/webm", 60.0)
    status, answer = asyncio.run(forking.run_job(quick))
    assert status == 0 and isinstance(answer_decoder.decode(answer), Decoded)


def test_a_forked_job_decodes_within_the_smallest_memory_setting(store: Store) -> None:
    """256 MiB of address space (SOUNDPOST_DECODE_MEMORY_MIB's floor) covers the fork server's libraries
    (FFmpeg, numpy with its OpenBLAS held to one thread: a thread per core would reserve more) and a job."""
    store.objects["small.webm"] = encoded("webm")
    job = Job(
        f"{store.url}/small.webm",
        len(encoded("webm")),
        store.etag("small.webm"),
        "audio/webm",
        60.0,
        rendition_url=f"{store.url}/small.webm.flac",
        memory_bytes=256 << 20,
    )
    status, answer = asyncio.run(forking.run_job(job))
    assert status == 0 and isinstance(answer_decoder.decode(answer), Decoded), answer
