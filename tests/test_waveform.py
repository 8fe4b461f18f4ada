"""The waveform's min/max pairs: exact windows of the samples, in memory of a fixed size however long the audio."""

from __future__ import annotations

import numpy as np
import pytest

from service.media.waveform import START_SAMPLES_PER_PIXEL, Waveform

RATE = 16_000


def brute_force(samples: np.ndarray, per_pixel: int) -> list[int]:
    """Each window of ``per_pixel`` samples (the last may be short) as its 8-bit min and max."""
    data: list[int] = []
    for start in range(0, len(samples), per_pixel):
        window = samples[start : start + per_pixel]
        data += (int(window.min()) >> 8, int(window.max()) >> 8)
    return data


@pytest.mark.parametrize("seed", range(12))
def test_each_pair_is_the_min_and_max_of_its_own_window(seed: int) -> None:
    """Frames of any size, merges included: pair i covers exactly samples [i*spp, (i+1)*spp)."""
    rng = np.random.default_rng(seed)
    limit = int(rng.integers(2, 40))
    samples = rng.integers(-32768, 32768, int(rng.integers(1, 150_000)), dtype=np.int16)
    waveform = Waveform(RATE, limit)
    position = 0
    while position < len(samples):
        size = int(rng.integers(0, 3000))
        waveform.add(samples[position : position + size])
        position += size
    peaks = waveform.peaks()
    assert peaks.length <= limit
    assert peaks.length == -(-len(samples) // peaks.samples_per_pixel)
    assert peaks.data == brute_force(samples, peaks.samples_per_pixel)


def test_ten_hours_are_held_in_the_memory_of_one_minute() -> None:
    """The pairs live in arrays fixed at the start and no sample is kept: an hour costs what a minute does."""
    second = (np.sin(np.arange(RATE) * 0.2) * 8000).astype(np.int16)
    minute, hours = Waveform(RATE), Waveform(RATE)
    arrays = (hours.lows, hours.highs)
    for _ in range(60):
        minute.add(second)
    for _ in range(10 * 3600):
        hours.add(second)
    assert hours.lows is arrays[0] and hours.highs is arrays[1]  # never grown nor replaced
    assert hours.lows.nbytes + hours.highs.nbytes == minute.lows.nbytes + minute.highs.nbytes
    long, short = hours.peaks(), minute.peaks()
    assert long.length <= hours.limit and short.length <= minute.limit
    assert (
        long.length * long.samples_per_pixel >= 10 * 3600 * RATE > (long.length - 1) * long.samples_per_pixel
    )
    assert (min(long.data), max(long.data)) == (min(short.data), max(short.data)) == (-32, 31)


def test_a_short_recording_keeps_the_finest_pixels() -> None:
    """Below the bound nothing merges: one pair per START_SAMPLES_PER_PIXEL samples, a short last one included."""
    waveform = Waveform(RATE)
    waveform.add(np.arange(-500, 500, dtype=np.int16) * 64)
    peaks = waveform.peaks()
    assert peaks.samples_per_pixel == START_SAMPLES_PER_PIXEL
    assert peaks.length == -(-1000 // START_SAMPLES_PER_PIXEL)
    assert (peaks.data[0], peaks.data[-1]) == ((-500 * 64) >> 8, (499 * 64) >> 8)


def test_no_samples_make_an_empty_waveform() -> None:
    peaks = Waveform(RATE).peaks()
    assert (peaks.length, peaks.data) == (0, [])
