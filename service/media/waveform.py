"""Waveform peaks (min/max pairs), gathered while decoding in memory of a fixed size.

Samples arrive as 16-bit mono at a fixed rate, a decoded frame at a time; each
pixel starts at ``START_SAMPLES_PER_PIXEL`` samples and, whenever the pairs fill
their fixed arrays, adjacent pixels merge (doubling samples per pixel). The
pixel being filled is kept as its running min/max, never as samples, so what
the waveform holds is the same for a minute and for an hour.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.core.media_job import MAX_PEAK_PAIRS, Peaks

START_SAMPLES_PER_PIXEL = 32

Samples = npt.NDArray[np.int16]


class Waveform:
    """Min/max of 16-bit mono samples per pixel, at most ``limit`` pixels."""

    def __init__(self, sample_rate: int, limit: int = MAX_PEAK_PAIRS) -> None:
        self.sample_rate = sample_rate
        self.limit = limit
        self.per_pixel = START_SAMPLES_PER_PIXEL
        # Twice the pairs the answer may hold: merging only ever pairs up a full, even run.
        self.lows: Samples = np.empty(2 * limit, np.int16)
        self.highs: Samples = np.empty(2 * limit, np.int16)
        self.length = 0
        # The pixel being filled: its min, max and how many samples it has seen so far.
        self._low, self._high, self._seen = 0, 0, 0

    def add(self, samples: Samples) -> None:
        """Take a run of signed 16-bit mono samples (a 1-D array of any length)."""
        start = self._fill(samples)
        while len(samples) - start >= self.per_pixel:
            room = len(self.lows) - self.length
            count = min(room, (len(samples) - start) // self.per_pixel)
            end = start + count * self.per_pixel
            pixels = samples[start:end].reshape(count, self.per_pixel)
            pixels.min(axis=1, out=self.lows[self.length : self.length + count])
            pixels.max(axis=1, out=self.highs[self.length : self.length + count])
            self.length += count
            start = end
            if self.length == len(self.lows):
                self._halve()
        if start < len(samples):
            rest = samples[start:]
            self._low, self._high, self._seen = int(rest.min()), int(rest.max()), len(rest)

    def _fill(self, samples: Samples) -> int:
        """Complete the pixel being filled from the first samples; how many samples that took."""
        if not self._seen:
            return 0
        head = samples[: self.per_pixel - self._seen]
        if len(head):
            self._low = min(self._low, int(head.min()))
            self._high = max(self._high, int(head.max()))
            self._seen += len(head)
        if self._seen == self.per_pixel:
            self._push()
        return len(head)

    def _push(self) -> None:
        """Store the pixel being filled as a pair."""
        self.lows[self.length], self.highs[self.length] = self._low, self._high
        self.length += 1
        self._seen = 0
        if self.length == len(self.lows):
            self._halve()

    def _halve(self) -> None:
        """Merge pixel pairs: twice the samples per pixel, half the pixels (an odd last one stands alone)."""
        count = self.length
        pairs = count // 2
        for values, merge in ((self.lows, np.minimum), (self.highs, np.maximum)):
            merged = merge(values[0 : 2 * pairs : 2], values[1 : 2 * pairs : 2])
            if count % 2:
                merged = np.append(merged, values[count - 1])
            values[: len(merged)] = merged
        self.length = pairs + count % 2
        self.per_pixel *= 2

    def peaks(self) -> Peaks:
        """audiowaveform's version 2 JSON at 8 bits, with at most ``limit`` pairs."""
        if self._seen:
            self._push()
        while self.length > self.limit:
            self._halve()
        pairs = np.empty((self.length, 2), np.int16)
        pairs[:, 0] = self.lows[: self.length] >> 8
        pairs[:, 1] = self.highs[: self.length] >> 8
        data: list[int] = pairs.ravel().tolist()
        return Peaks(2, 1, self.sample_rate, self.per_pixel, 8, self.length, data)
