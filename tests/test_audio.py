"""Audio types: whatever the browser calls a file, the policy pins one canonical type."""

from __future__ import annotations

import pytest

from service.core import audio_types as audio


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("audio/wav", "audio/wav"),
        ("audio/x-wav", "audio/wav"),
        ("audio/wave", "audio/wav"),
        ("AUDIO/X-WAV", "audio/wav"),
        ("audio/mpeg", "audio/mpeg"),
        ("audio/mp3", "audio/mpeg"),
        ("audio/x-m4a", "audio/mp4"),
        ("audio/m4a", "audio/mp4"),
        ("audio/aac", "audio/aac"),
        ("audio/webm;codecs=opus", "audio/webm"),
        (' audio/webm ; codecs="opus" ', "audio/webm"),
        ("audio/ogg; codecs=opus", "audio/ogg"),
        ("audio/opus", "audio/opus"),
        ("audio/x-flac", "audio/flac"),
    ],
)
def test_aliases_normalise_to_one_canonical_type(given: str, canonical: str) -> None:
    assert audio.canonical_type(given) == canonical


@pytest.mark.parametrize(
    "given",
    ["", "audio", "audio/", "image/png", "text/plain", "video/webm", "audio/x-unknown", "application/json"],
)
def test_non_audio_and_unknown_types_have_no_canonical_type(given: str) -> None:
    assert audio.canonical_type(given) is None


def test_every_canonical_type_is_its_own_canonical_type_and_has_an_extension() -> None:
    for canonical in audio.CANONICAL_TYPES:
        assert audio.canonical_type(canonical) == canonical
        assert audio.extensions_for(canonical)[0].startswith(".")


@pytest.mark.parametrize(
    ("extension", "canonical", "agrees"),
    [
        (".wav", "audio/wav", True),
        (".WAV", "audio/wav", True),
        (".mp3", "audio/wav", False),
        (".txt", "audio/mpeg", False),
        (".m4a", "audio/mp4", True),
        (".mp4", "audio/mp4", True),
        (".opus", "audio/ogg", True),
        (".ogg", "audio/opus", True),
        (".webm", "audio/webm", True),
        (".exe", "audio/flac", False),
    ],
)
def test_extension_must_agree_with_type(extension: str, canonical: str, agrees: bool) -> None:
    assert audio.extension_agrees(extension, canonical) is agrees
