"""The page as people use it, in headless Chromium: limits up front, rows that say what is true, retry,
clear, focus that lands somewhere sensible, local-time recording names, lengths, a player that seeks
and the waveform drawn from the peaks."""

from __future__ import annotations

import io
import json
import re
import wave
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.audio_samples import tone
from tests.support.page import UPLOAD_WAIT, MiB, expect, listed, sign_in, transfer, wait_playable

QUOTA = 100_000_000


@pytest.fixture
def site_settings() -> dict[str, str]:
    """The page's usual size limit, and a quota, so the limits line names both."""
    return {"SOUNDPOST_MAX_UPLOAD_BYTES": str(64 * MiB), "SOUNDPOST_USER_QUOTA_BYTES": str(QUOTA)}


def pick(page: Any, name: str, data: bytes, content_type: str = "audio/wav") -> None:
    page.locator("#file").set_input_files({"name": name, "mimeType": content_type, "buffer": data})


def test_the_accepted_types_size_limit_and_quota_are_shown_before_any_upload(alice: Any) -> None:
    """Before a file is picked, the drop zone names the types, the size limit and the quota used; an upload counts."""
    limits = alice.locator("#limits")
    expect(limits).to_have_text(
        "MP3, M4A, AAC, WAV, WebM, Ogg, Opus or FLAC files, up to 67 MB each. You have used 0 B of your 100 MB."
    )
    expect(alice.locator("#file")).to_have_accessible_description(re.compile("^MP3, M4A, AAC, WAV"))
    assert ".flac" in (alice.locator("#file").get_attribute("accept") or "")
    pick(alice, "counted.wav", tone(1))
    expect(transfer(alice, "counted.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    expect(limits).to_contain_text("You have used 16 KB of your 100 MB.")


def test_a_click_anywhere_in_the_drop_zone_opens_the_picker(alice: Any, stored: Any) -> None:
    """Clicking the zone's text, not only its button, opens the file chooser; the chosen file uploads."""
    alice.on("filechooser", lambda chooser: None)  # subscribe well before the click (see test_page)
    with alice.expect_file_chooser() as chooser:
        alice.locator("#drop p").first.click()
    data = tone(1)
    chooser.value.set_files({"name": "zone.wav", "mimeType": "audio/wav", "buffer": data})
    expect(transfer(alice, "zone.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert stored("zone.wav") == data


def test_a_done_upload_leaves_uploading_and_clear_finished_removes_it(alice: Any) -> None:
    """A finished row moves from "Uploading" to "Finished" and says where the upload is; Clear empties Finished."""
    pick(alice, "settled.wav", tone(1))
    row = alice.locator("#finished .transfer", has=alice.locator(".name", has_text="settled.wav"))
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    expect(row.locator(".message")).to_have_text("Uploaded and checked: it is under Your uploads.")
    expect(alice.locator("#transfers-section")).to_be_hidden()
    expect(alice.locator("#transfers .transfer")).to_have_count(0)
    expect(listed(alice, "settled.wav")).to_be_visible()
    alice.get_by_role("button", name="Clear finished").click()
    expect(alice.locator("#finished-section")).to_be_hidden()
    expect(alice.locator("#finished .transfer")).to_have_count(0)
    expect(alice.locator("#add-title")).to_be_focused()
    expect(listed(alice, "settled.wav")).to_be_visible()  # clearing a row deletes nothing


def test_a_failed_upload_says_what_to_do_and_retry_uploads_it(alice: Any, stored: Any) -> None:
    """When the service is in trouble the row says so plainly, keeps the code apart, and Retry succeeds."""
    refused: list[str] = []

    def unavailable_once(route: Any) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        body = {"error": {"code": "storage_unavailable", "detail": "The storage service is unavailable."}}
        route.fulfill(status=503, content_type="application/json", body=json.dumps(body))

    alice.route(re.compile(r"/api/upload/presigned-url$"), unavailable_once)
    data = tone(1)
    pick(alice, "again.wav", data)
    row = transfer(alice, "again.wav")
    expect(row).to_have_attribute("data-state", "failed")
    expect(row.locator(".message")).to_have_text(
        "Soundpost or its storage is having trouble: try again in a moment."
    )
    expect(row.locator(".code")).to_have_text("Code for support: storage_unavailable")
    row.get_by_role("button", name="Retry again.wav").click()
    expect(alice.locator("#add-title")).to_be_focused()
    expect(transfer(alice, "again.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    expect(transfer(alice, "again.wav")).to_have_count(1)
    assert len(refused) == 1 and stored("again.wav") == data


def test_deleting_the_last_upload_moves_focus_to_the_list_heading(alice: Any) -> None:
    """With nothing left to move to, focus lands on "Your uploads", not on the page's body."""
    pick(alice, "last.wav", tone(1))
    item = listed(alice, "last.wav")
    expect(item).to_be_visible(timeout=UPLOAD_WAIT)
    item.get_by_role("button", name="Delete last.wav").click()
    item.get_by_role("button", name="Really delete last.wav?").click()
    expect(item).to_have_count(0)
    expect(alice.locator("#library-title")).to_be_focused()
    expect(alice.locator("#library-empty")).to_be_visible()


ZONE = "Pacific/Kiritimati"  # UTC+14: a UTC name would show another hour, usually another day


def test_a_recording_is_named_in_local_time_says_what_is_safe_where_and_plays_seekably(
    browser: Any, site: str
) -> None:
    """Recording in UTC+14: the name is local time, the row says recorded / on this device / in storage with
    no empty bar, and once uploaded the row shows the length the recorder knew and the player seeks."""
    context = browser.new_context(
        base_url=site, permissions=["microphone"], timezone_id=ZONE, viewport={"width": 1280, "height": 900}
    )
    try:
        page = sign_in(context.new_page(), "alice", "Alice Example")
        page.get_by_role("button", name="Record", exact=True).click()
        row = transfer(page, "recording-")
        expect(row).to_have_attribute("data-state", "recording")
        expect(row.locator(".percent")).to_have_text(
            re.compile(r"^0:0[1-9] recorded · saved on this device · [\d.]+ K?B of [\d.]+ K?B in storage$")
        )
        expect(row.locator("progress")).to_be_hidden()  # parts fill slowly; an empty bar would look broken
        name = row.locator(".name").inner_text()
        stamp = re.fullmatch(r"recording-(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\.webm", name)
        assert stamp, name
        named = datetime.strptime(stamp.group(1), "%Y-%m-%d_%H-%M-%S").replace(tzinfo=ZoneInfo(ZONE))
        assert abs(datetime.now(ZoneInfo(ZONE)) - named) < timedelta(minutes=2), (
            "named in the page's local time"
        )
        expect(page.locator("#record-time")).to_have_text("0:03", timeout=10_000)
        page.get_by_role("button", name="Stop recording").click()
        expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
        expect(row.locator(".message")).to_contain_text("under Your uploads")
        expect(row.locator(".percent")).to_have_text(re.compile(r"^0:0[3-5] recorded · all in storage$"))
        item = listed(page, name)
        expect(item.locator(".duration")).to_have_text(re.compile(r"^0:0[3-5]$"))
        wait_playable(item)
        middle = item.locator("audio").evaluate(
            """(audio) => new Promise((resolve) => {
                const seek = () => {
                    if (!Number.isFinite(audio.duration) || audio.seeking || audio.currentTime > 0) {
                        return setTimeout(seek, 50);  // the page is still finding the length
                    }
                    audio.addEventListener("seeked", () => resolve([audio.currentTime, audio.duration]), { once: true });
                    audio.currentTime = audio.duration / 2;
                };
                seek();
            })"""
        )
        position, length = middle
        assert 2.5 < length < 6 and abs(position - length / 2) < 0.5, middle
    finally:
        context.close()


def peaks_of(data: bytes, samples_per_pixel: int = 80) -> dict[str, Any]:
    """audiowaveform's JSON (version 2, 8 bits) for a mono 16-bit WAV: the shape GET /api/uploads/{id}/peaks answers."""
    with wave.open(io.BytesIO(data)) as source:
        rate, frames = source.getframerate(), source.readframes(source.getnframes())
    samples = [
        int.from_bytes(frames[i : i + 2], "little", signed=True) >> 8 for i in range(0, len(frames), 2)
    ]
    pairs = [samples[i : i + samples_per_pixel] for i in range(0, len(samples), samples_per_pixel)]
    flat = [value for chunk in pairs for value in (min(chunk), max(chunk))]
    return {
        "version": 2,
        "channels": 1,
        "sample_rate": rate,
        "samples_per_pixel": samples_per_pixel,
        "bits": 8,
        "length": len(pairs),
        "data": flat,
    }


def test_the_page_draws_the_waveform_from_the_peaks_and_a_click_on_it_seeks(alice: Any) -> None:
    """Given a listing with the audio facts and a peaks link (the fixed API shape, added here in the browser
    until the service sends it), the row shows length and facts, draws the peaks and seeks where clicked."""
    data = tone(4, pitch=220)
    pick(alice, "shape.wav", data)
    expect(transfer(alice, "shape.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    peaks: list[str] = []

    def with_facts(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        for item in body["uploads"]:
            item.update(
                durationSeconds=4.0,
                audio={"codec": "pcm_s16le", "sampleRate": 8000, "channels": 1, "bitRate": 128000},
                peaksUrl=f"/api/uploads/{item['id']}/peaks",
            )
        route.fulfill(response=answer, json=body)

    def serve_peaks(route: Any) -> None:
        peaks.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(peaks_of(data)))

    alice.route(re.compile(r"/api/uploads\?limit="), with_facts)
    alice.route(re.compile(r"/api/uploads/[^/]+/peaks$"), serve_peaks)
    alice.reload()
    item = listed(alice, "shape.wav")
    expect(item.locator(".duration")).to_have_text("0:04")
    expect(item.locator(".facts")).to_have_text(" · pcm_s16le · 8 kHz · mono")
    expect(item).to_have_attribute("data-waveform", "drawn")
    assert len(peaks) == 1
    canvas = item.locator("canvas.waveform")
    expect(canvas).to_be_visible()
    inked = canvas.evaluate(
        """(canvas) => {
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) inked += 1;
            return inked / (canvas.width * canvas.height);
        }"""
    )
    assert 0.3 < inked < 0.95, f"a steady tone fills most of the height: {inked}"
    wait_playable(item)
    box = canvas.bounding_box()
    assert box is not None
    canvas.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    seconds = item.locator("audio").evaluate("(audio) => audio.currentTime")
    assert abs(seconds - 3.0) < 0.2, seconds


CONTRAST = """([selector, property]) => {
    const rgb = (value) => value.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
    const luminance = (value) => {
        const [r, g, b] = rgb(value).map((c) => {
            const s = c / 255;
            return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => {
        const [high, low] = [luminance(a), luminance(b)].sort((x, y) => y - x);
        return (high + 0.05) / (low + 0.05);
    };
    const element = document.querySelector(selector);
    const mark = getComputedStyle(element)[property];
    const page = getComputedStyle(document.body).backgroundColor;
    const own = getComputedStyle(element).backgroundColor;
    return [ratio(mark, page), own.endsWith(", 0)") ? null : ratio(mark, own)];
}"""


def test_quiet_button_borders_and_the_focus_ring_stand_out_at_3_to_1(alice: Any) -> None:
    """WCAG 1.4.11: a quiet button's border and the keyboard focus ring contrast 3:1 with what is around them."""
    for selector in ("#account button.quiet", "#drop"):
        around_page, around_self = alice.evaluate(CONTRAST, [selector, "borderTopColor"])
        assert around_page >= 3 and (around_self is None or around_self >= 3), (
            selector,
            around_page,
            around_self,
        )
    sign_out = alice.get_by_role("button", name="Sign out")
    sign_out.focus()
    alice.keyboard.press("Tab")
    alice.keyboard.press("Shift+Tab")  # focus from the keyboard: :focus-visible draws the ring
    expect(sign_out).to_be_focused()
    ring, _ = alice.evaluate(CONTRAST, ["#account button.quiet", "outlineColor"])
    assert alice.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert ring >= 3, ring


def test_a_refused_microphone_is_explained_in_words_and_focus_stays_on_record(
    browser: Any, site: str
) -> None:
    """When the person says no to the microphone, Record says what to do in one sentence and keeps focus."""
    context = browser.new_context(base_url=site, viewport={"width": 1280, "height": 900})
    # Chromium's fake-UI flag always says yes; this is the answer a browser gives when the person says no.
    context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () =>"
        " Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
    )
    try:
        page = sign_in(context.new_page(), "alice", "Alice Example")
        record = page.get_by_role("button", name="Record", exact=True)
        record.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#record-error")).to_have_text(
            "Cannot record. Soundpost may not use the microphone: allow it in the browser's site settings, "
            "then press Record again."
        )
        expect(record).to_be_focused()
        expect(record).to_have_attribute("aria-pressed", "false")
        expect(page.locator("#transfers .transfer")).to_have_count(0)
    finally:
        context.close()


def test_a_row_says_the_upload_is_being_checked_until_the_service_answers(alice: Any) -> None:
    """Between the last byte and the service's verdict, the row says it is in storage and being checked."""
    held: list[Any] = []
    alice.route(re.compile(r"/api/uploads/[^/]+/confirm$"), lambda route: held.append(route))
    pick(alice, "checked.wav", tone(1))
    row = transfer(alice, "checked.wav")
    expect(row.locator(".message")).to_have_text(
        "In storage: checking that it is audio…", timeout=UPLOAD_WAIT
    )
    expect(row).to_have_attribute("data-state", "uploading")
    expect(row.locator(".percent")).to_have_text("100%")
    held[0].continue_()
    expect(row).to_have_attribute("data-state", "done")
    expect(row.locator(".message")).to_have_text("Uploaded and checked: it is under Your uploads.")
