"""The decoded audio as 16 kHz mono 16-bit, resampled in chunks of a fixed size rather than frame by frame.

Decoders hand out small frames (20 ms for Opus): resampling each one alone cost
more CPU than decoding it, in PyAV's per-call overhead (bench/README.md). A FIFO
gathers them into chunks of ``CHUNK_SAMPLES``, so what the pass holds for this
is bounded by the chunk, not by the recording's length.
"""

from __future__ import annotations

from typing import Any

import av

# About a third of a second at 48 kHz: four times larger saved only a millisecond or two a minute.
CHUNK_SAMPLES = 16384


class Mixdown:
    """Frames in at any rate, layout and format; 16-bit mono frames at ``rate`` out."""

    def __init__(self, rate: int) -> None:
        self.fifo = av.AudioFifo()
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self.channels = 0

    def add(self, frame: Any) -> list[Any]:
        """Queue one decoded frame; the resampled frames of every full chunk."""
        channels = frame.layout.nb_channels
        if self.channels and channels != self.channels:
            # The FIFO checks the format and the rate itself, but not the channel count.
            raise ValueError(f"the stream changes from {self.channels} to {channels} channels")
        self.channels = channels
        frame.pts = None  # the FIFO and the resampler follow sample counts, not the container's timestamps
        self.fifo.write(frame)
        if self.fifo.samples < CHUNK_SAMPLES:
            return []
        out: list[Any] = []
        for chunk in self.fifo.read_many(CHUNK_SAMPLES):
            out += self.resampler.resample(chunk)
        return out

    def finish(self) -> list[Any]:
        """What is still queued, resampled, and the resampler's own tail."""
        rest = self.fifo.read()
        out: list[Any] = self.resampler.resample(rest) if rest is not None else []
        return out + self.resampler.resample(None)
