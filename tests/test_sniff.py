"""service.core.sniff: the first bytes must carry the declared container's signature; durations come from headers."""

from __future__ import annotations

import pytest

from service.core import sniff
from tests.support import audio_samples

SIGNATURES = {
    "audio/wav": audio_samples.wav(),
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/aac": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "audio/flac": audio_samples.flac(),
    "audio/ogg": b"OggS\x00\x02" + bytes(20),
    "audio/opus": b"OggS\x00\x02" + bytes(20),
    "audio/webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
    "audio/mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00",
}


@pytest.mark.parametrize("canonical", sorted(SIGNATURES))
def test_each_format_is_recognised_by_its_signature(canonical: str) -> None:
    """The start of a file of each accepted container passes for its own type."""
    assert sniff.matches_type(SIGNATURES[canonical], canonical)


@pytest.mark.parametrize("canonical", sorted(SIGNATURES))
def test_a_pdf_passes_for_no_audio_type(canonical: str) -> None:
    """A document renamed to audio is caught whatever type it claims."""
    assert not sniff.matches_type(audio_samples.not_audio(), canonical)


@pytest.mark.parametrize(
    ("head", "claimed"),
    [
        (audio_samples.wav(), "audio/flac"),
        (audio_samples.flac(), "audio/wav"),
        (b"OggS" + bytes(20), "audio/webm"),
        (b"\xff\xfb\x90\x64" + bytes(8), "audio/aac"),  # an MP3 frame is not ADTS
        (b"\xff\xf1\x50\x80" + bytes(8), "audio/mpeg"),  # an ADTS frame is not MPEG audio
        (b"RIFF\x00\x00\x00\x00AVI ", "audio/wav"),  # RIFF, but a video
        (b"", "audio/wav"),
    ],
)
def test_another_formats_signature_does_not_pass(head: bytes, claimed: str) -> None:
    """Bytes of one format under another format's type are a mismatch."""
    assert not sniff.matches_type(head, claimed)


def test_an_mpeg_frame_without_id3_passes_as_mpeg() -> None:
    """MP3 files without tags start straight with a frame sync."""
    assert sniff.matches_type(b"\xff\xfb\x90\x64" + bytes(8), "audio/mpeg")


def test_an_unknown_type_never_matches() -> None:
    """Only the containers the service knows can be confirmed."""
    assert not sniff.matches_type(audio_samples.wav(), "audio/x-unknown")


def test_wav_duration_comes_from_its_header() -> None:
    """A two-second WAV reports two seconds."""
    assert sniff.duration_seconds(audio_samples.wav(2.0)) == 2.0


def test_duration_is_read_from_the_start_of_a_wav_alone() -> None:
    """The header at the start is enough; confirm reads only the first bytes of large files."""
    assert sniff.duration_seconds(audio_samples.wav(30.0)[:4096]) == 30.0


def test_flac_duration_comes_from_streaminfo_even_in_a_partial_read() -> None:
    """FLAC's STREAMINFO total samples over sample rate, known from the first bytes."""
    assert sniff.duration_seconds(audio_samples.flac(seconds=3), whole=False) == 3.0


def test_a_whole_cbr_mp3_reports_its_duration() -> None:
    """Without a VBR header, the length follows from the bitrate and the whole file's size."""
    assert sniff.duration_seconds(audio_samples.mp3_cbr(100)) == pytest.approx(100 * 1152 / 44100, abs=0.05)


def test_the_start_of_an_mp3_gives_no_duration_rather_than_a_wrong_one() -> None:
    """Bitrate times a partial size would under-report; None says it is unknown."""
    assert sniff.duration_seconds(audio_samples.mp3_cbr(100)[:4096], whole=False) is None


def test_the_start_of_a_wav_gives_its_duration_when_told_it_is_partial() -> None:
    """WAV states its data size in the header, so a partial read is enough."""
    assert sniff.duration_seconds(audio_samples.wav(30.0)[:4096], whole=False) == 30.0


def test_flac_duration_comes_from_streaminfo() -> None:
    """FLAC's STREAMINFO total samples over sample rate."""
    assert sniff.duration_seconds(audio_samples.flac(seconds=3)) == 3.0


@pytest.mark.parametrize("data", [audio_samples.not_audio(), b"", SIGNATURES["audio/webm"]])
def test_duration_is_none_when_no_header_gives_it(data: bytes) -> None:
    """Unknown or truncated headers give None, never an exception or a guess."""
    assert sniff.duration_seconds(data) is None
