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


def test_a_wav_header_states_its_length_from_the_data_size() -> None:
    """Data chunk size over byte rate: the length the header claims, even from the first bytes alone."""
    assert sniff.wav_stated_seconds(audio_samples.wav(30.0)[:4096]) == 30.0


def test_a_streaming_wav_header_states_no_length() -> None:
    """A data size of 0 or 0xFFFFFFFF (what streaming writers leave) claims nothing."""
    header = bytearray(audio_samples.wav(1.0)[:44])
    header[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    assert sniff.wav_stated_seconds(bytes(header)) is None


@pytest.mark.parametrize("data", [audio_samples.not_audio(), b"", audio_samples.wav(1.0)[:30]])
def test_no_length_is_stated_without_a_whole_wav_header(data: bytes) -> None:
    """Not a WAV, or cut before its data chunk: None, never an exception."""
    assert sniff.wav_stated_seconds(data) is None
