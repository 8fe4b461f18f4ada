"""A Chrome recording's row after a reload, from what the service knows about the audio:
its length, its codec, its waveform drawn from the peaks, and a player that seeks where the waveform is clicked."""

from __future__ import annotations

import re
from typing import Any

from tests.support.page import UPLOAD_WAIT, expect, listed, transfer, wait_playable


def test_a_recordings_row_shows_the_servers_length_codec_and_waveform_and_seeks(alice: Any) -> None:
    """Reloaded (so nothing the recorder measured is left), the row shows the service's facts and peaks."""
    alice.get_by_role("button", name="Record", exact=True).click()
    expect(alice.locator("#record-time")).to_have_text("0:03", timeout=10_000)
    alice.get_by_role("button", name="Stop recording").click()
    row = transfer(alice, "recording-")
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    name = row.locator(".name").inner_text()
    alice.reload()
    item = listed(alice, name)
    expect(item.locator(".duration")).to_have_text(re.compile(r"^0:0[3-5]$"))
    expect(item.locator(".facts")).to_contain_text("opus", ignore_case=True)
    expect(item).to_have_attribute("data-waveform", "drawn")
    wait_playable(item)
    canvas = item.locator("canvas.waveform")
    box = canvas.bounding_box()
    assert box is not None
    item.locator("audio").evaluate(
        """(audio) => new Promise((resolve) => {
            const ready = () => Number.isFinite(audio.duration) && !audio.seeking && audio.currentTime === 0
                ? resolve() : setTimeout(ready, 50);
            ready();
        })"""
    )
    canvas.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    position, length = item.locator("audio").evaluate("(audio) => [audio.currentTime, audio.duration]")
    assert abs(position - length / 2) < 0.3, (position, length)
