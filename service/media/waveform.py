"""Waveform peaks (min/max pairs), gathered while decoding and kept to a bounded size.

Samples arrive as 16-bit mono at a fixed rate; each pixel starts at
``START_SAMPLES_PER_PIXEL`` samples and, whenever the pairs outgrow the bound,
adjacent pixels merge (doubling samples per pixel), so memory stays bounded
however long the recording is.
"""

from __future__ import annotations

import array

from service.core.media_job import MAX_PEAK_PAIRS, Peaks

START_SAMPLES_PER_PIXEL = 32


class Waveform:
    """Min/max of 16-bit mono samples per pixel, at most ``limit`` pixels."""

    def __init__(self, sample_rate: int, limit: int = MAX_PEAK_PAIRS) -> None:
        self.sample_rate = sample_rate
        self.limit = limit
        self.per_pixel = START_SAMPLES_PER_PIXEL
        self.lows: list[int] = []
        self.highs: list[int] = []
        self._pending = array.array("h")

    def add(self, samples: bytes) -> None:
        """Take a run of native-endian signed 16-bit mono samples."""
        pending = self._pending
        pending.frombytes(samples)
        step, whole = self.per_pixel, len(pending) - len(pending) % self.per_pixel
        for start in range(0, whole, step):
            chunk = pending[start : start + step]
            self.lows.append(min(chunk))
            self.highs.append(max(chunk))
        del pending[:whole]
        while len(self.lows) > 2 * self.limit:
            self._halve()

    def _halve(self) -> None:
        """Merge pixel pairs: twice the samples per pixel, half the pixels (an odd last one stands alone)."""
        lows, highs = self.lows, self.highs
        self.lows = [min(lows[i : i + 2]) for i in range(0, len(lows), 2)]
        self.highs = [max(highs[i : i + 2]) for i in range(0, len(highs), 2)]
        self.per_pixel *= 2

    def peaks(self) -> Peaks:
        """audiowaveform's version 2 JSON at 8 bits, with at most ``limit`` pairs."""
        if self._pending:
            self.lows.append(min(self._pending))
            self.highs.append(max(self._pending))
            self._pending = array.array("h")
        while len(self.lows) > self.limit:
            self._halve()
        data: list[int] = []
        for low, high in zip(self.lows, self.highs, strict=True):
            data += (low >> 8, high >> 8)
        return Peaks(2, 1, self.sample_rate, self.per_pixel, 8, len(self.lows), data)
