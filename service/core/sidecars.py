"""The files kept beside a library upload, and the audio facts carried in a sidecar's name.

A library folder holds ``.audio-{facts}.json`` (the waveform peaks, its name
stating duration, codec, sample rate, channels and bit rate), ``.speech.flac``
(the rendition, when renditions are on) and the upload itself, in that order
(a sidecar's leading ``.`` sorts before every safe filename). One ListObjectsV2
of a user's library therefore yields every upload with its facts: no HEAD or
GET per item, and nothing kept in a process that a restart or another replica
would not see.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from service.core.media_job import AudioFacts

RENDITION = ".speech.flac"
# Beside an upload promoted before uploads were decoded, which decoding now refuses: not tried again.
UNDECODABLE = ".undecodable.json"
FACTS_PREFIX = ".audio-"
FACTS_SUFFIX = ".json"
# The most objects one upload's folder holds: the facts, the rendition, the upload.
FOLDER_OBJECTS = 3
_FACTS = re.compile(r"^\.audio-(\d{1,12})-([a-z0-9_]{1,32})-(\d{1,7})-(\d{1,3})-(\d{1,12})\.json$")


class Facts(NamedTuple):
    """Duration and audio facts as a listing reads them back from a sidecar's name."""

    duration_seconds: float
    audio: AudioFacts


def facts_name(duration_seconds: float, audio: AudioFacts) -> str:
    """The peaks sidecar's name, stating the facts (duration to the millisecond)."""
    millis = round(duration_seconds * 1000)
    codec = re.sub(r"[^a-z0-9_]", "_", audio.codec.lower())[:32] or "unknown"
    return (
        f"{FACTS_PREFIX}{millis}-{codec}-{audio.sample_rate}-{audio.channels}-{audio.bit_rate}{FACTS_SUFFIX}"
    )


def parse_facts(name: str) -> Facts | None:
    """The facts a sidecar name states, or None when ``name`` is not a facts sidecar."""
    match = _FACTS.match(name)
    if match is None:
        return None
    millis, codec, rate, channels, bit_rate = match.groups()
    return Facts(int(millis) / 1000, AudioFacts(codec, int(rate), int(channels), int(bit_rate)))


def is_sidecar(name: str) -> bool:
    return name.startswith(".")
