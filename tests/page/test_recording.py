"""Recording-first uploads in headless Chromium: upload while recording, survive a reload, resume files.

The S3 server here is moto in a process of its own, told to assemble parts as small as
``PART`` bytes, and the app is told (with its test-only setting) to cut parts that small:
Chromium's fake microphone records about 16 KB a second, so a few seconds make several parts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service import devstack
from service.core import keys
from tests.support.audio_samples import tone, tone_larger_than
from tests.support.page import (
    UPLOAD_WAIT,
    MiB,
    PartChecksums,
    expect,
    listed,
    sign_in,
    transfer,
    wait_playable,
)
from tests.support.s3 import admin, moto_accepting_parts_of

PART = 24 * 1024  # more than one chunk (about 16 KB), less than two
SMALL_PARTS = {
    "SOUNDPOST_MAX_UPLOAD_BYTES": str(64 * MiB),
    "SOUNDPOST_MULTIPART_PART_BYTES": str(PART),
    "SOUNDPOST_MULTIPART_SMALL_PARTS_FOR_TESTS": "true",
}
RECORDING = re.compile(r"^recording-.*\.webm$")
STAGING_CLEARED_SECONDS = 10  # a bound on a hang, not a performance assertion
S3_WAIT = 20.0  # s: an upper bound on waiting for parts, not an assertion about speed


@pytest.fixture(scope="module")
def s3() -> Iterator[devstack.S3Endpoint]:
    """moto's S3, assembling parts down to PART bytes (this module's own server)."""
    with moto_accepting_parts_of(PART) as endpoint:
        yield endpoint


@pytest.fixture
def site_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Small parts; a test may add settings of its own by parametrizing this fixture."""
    return {**SMALL_PARTS, **getattr(request, "param", {})}


def pending_uploads(s3: devstack.S3Endpoint, bucket: str) -> list[dict[str, Any]]:
    with admin(s3) as client:
        return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def parts_in_s3(
    page: Any, s3: devstack.S3Endpoint, bucket: str, at_least: int
) -> tuple[dict[str, Any], list[Any]]:
    """The one unfinished multipart upload and its parts, once S3 holds at least ``at_least`` of them.

    It waits with the page's clock: Playwright's sync API runs route handlers only inside its own calls.
    """
    deadline = time.monotonic() + S3_WAIT
    while True:
        uploads = pending_uploads(s3, bucket)
        assert len(uploads) <= 1, uploads
        if uploads:
            with admin(s3) as client:
                listing = client.list_parts(
                    Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
                )
            parts = listing.get("Parts", [])
            if len(parts) >= at_least:
                return uploads[0], parts
        assert time.monotonic() < deadline, f"S3 never held {at_least} parts"
        page.wait_for_timeout(100)


def only_object(s3: devstack.S3Endpoint, bucket: str) -> dict[str, Any]:
    """The one verified upload in the library (not its sidecars), with nothing left waiting in staging.

    The staging object goes once the upload is announced, just after confirm answered: waited for, within bounds.
    """
    library = keys.area_prefix("uploads/", keys.LIBRARY)
    with admin(s3) as client:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=library).get("Contents", [])
        objects = [o for o in listed if keys.parse_library_key("uploads/", o["Key"]) is not None]
        deadline = time.monotonic() + STAGING_CLEARED_SECONDS
        while True:
            staged = client.list_objects_v2(Bucket=bucket, Prefix=keys.area_prefix("uploads/", keys.STAGING))
            if staged.get("KeyCount", 0) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert len(objects) == 1, objects
    assert staged.get("KeyCount", 0) == 0, staged.get("Contents")
    return dict(objects[0])


def browser_storage(page: Any) -> dict[str, int]:
    """How many unfinished uploads and recording chunks this browser profile keeps in IndexedDB."""
    return dict(page.evaluate("async () => (await import('./static/store.js')).counts()"))


def page_upload_id(page: Any, s3_upload_id: str) -> str:
    """The id the page keeps an upload under: the service's sealed id, which begins with S3's id and a dot."""
    found = page.evaluate(
        """async (s3Id) => {
            const me = await (await fetch('/api/me')).json();
            const records = await (await import('./static/store.js')).uploadsOf(me.userId);
            return records.map((r) => r.uploadId).filter((id) => id.startsWith(s3Id + '.'));
        }""",
        s3_upload_id,
    )
    assert len(found) == 1, found
    return str(found[0])


def stored_record(page: Any, upload_id: str) -> dict[str, Any]:
    return dict(
        page.evaluate(
            "async (id) => { const r = await (await import('./static/store.js')).getUpload(id);"
            " return r && { bytes: r.bytes, durationMs: r.durationMs, kind: r.kind, userId: r.userId }; }",
            upload_id,
        )
    )


def decoded_seconds(page: Any, key: str) -> float:
    """Fetch the stored object through its playback URL and decode all of it: its true length in seconds."""
    return float(
        page.evaluate(
            """async (id) => {
                const { url } = await (await fetch(`api/uploads/${id}/url`)).json();
                const data = await (await fetch(url)).arrayBuffer();
                return (await new OfflineAudioContext(1, 1, 48000).decodeAudioData(data)).duration;
            }""",
            key.split("/")[-2],
        )
    )


def start_recording(page: Any) -> float:
    """Press Record; returns when it started (time.monotonic())."""
    page.get_by_role("button", name="Record", exact=True).click()
    expect(page.get_by_role("button", name="Stop recording")).to_have_attribute("aria-pressed", "true")
    return time.monotonic()


def part_numbers_sent(page: Any) -> list[int]:
    """Part numbers the page PUTs to S3 from now on, in order."""
    sent: list[int] = []

    def note(request: Any) -> None:
        found = re.search(r"partNumber=(\d+)", request.url)
        if request.method == "PUT" and found:
            sent.append(int(found.group(1)))

    page.on("request", note)
    return sent


def test_a_recording_is_in_storage_part_by_part_before_stop(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """While recording, full parts reach S3; Stop sends the rest, and the object decodes to the recorded length.

    Record and Stop are pressed from the keyboard; focus stays on the button throughout.
    """
    button = alice.locator("#record")
    button.focus()
    alice.keyboard.press("Enter")
    expect(alice.get_by_role("button", name="Stop recording")).to_have_attribute("aria-pressed", "true")
    started = time.monotonic()
    expect(button).to_be_focused()
    expect(button).to_have_accessible_description(
        "A recording uploads while you record, and survives a reload or a crash."
    )
    expect(alice.locator("#announce")).to_have_text("Recording. It uploads while you record.")
    row = transfer(alice, "recording-")
    upload, parts = parts_in_s3(alice, s3, bucket, at_least=2)
    expect(alice.get_by_role("button", name="Stop recording")).to_be_visible()  # still recording
    assert [p["PartNumber"] for p in parts[:2]] == [1, 2] and all(p["Size"] >= PART for p in parts)
    expect(row.locator(".percent")).to_have_text(
        re.compile(r"^0:0\d recorded · saved on this device · ([\d.]+ KB of [\d.]+ KB|all) in storage$")
    )
    alice.keyboard.press("Enter")
    recorded = time.monotonic() - started
    expect(alice.locator("#announce")).to_contain_text("Recording stopped after 0:0")
    expect(alice.get_by_role("button", name="Record", exact=True)).to_be_focused()
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert pending_uploads(s3, bucket) == []
    stored = only_object(s3, bucket)
    staging, library = (keys.area_prefix("uploads/", area) for area in (keys.STAGING, keys.LIBRARY))
    assert stored["Key"] == upload["Key"].replace(staging, library, 1) and stored["Size"] > 2 * PART
    name = row.locator(".name").inner_text()
    assert RECORDING.match(name)
    wait_playable(listed(alice, name))
    truth = decoded_seconds(alice, stored["Key"])
    assert abs(truth - recorded) < 1.5
    # The service decoded Chromium's WebM (whose header states no duration) to the same length.
    [confirmed] = alice.evaluate("async () => (await (await fetch('api/uploads')).json()).uploads")
    assert abs(confirmed["durationSeconds"] - truth) <= max(0.05, truth * 0.01), (confirmed, truth)
    assert confirmed["audio"]["codec"] == "opus" and confirmed["peaksUrl"].endswith("/peaks")
    assert browser_storage(alice) == {"uploads": 0, "chunks": 0}


def test_a_reload_mid_recording_offers_it_and_finishing_sends_only_what_s3_lacks(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """After a reload the page offers the recording; finishing uploads each missing part once and keeps all audio.

    Every part goes with its SHA-256, and complete names each part's, those S3 took before the reload
    included (kept in the page's record of the part); promotion confirms they are the bytes' own.
    """
    checksums = PartChecksums(alice)
    start_recording(alice)
    upload, _ = parts_in_s3(alice, s3, bucket, at_least=1)
    deadline = time.monotonic() + S3_WAIT
    while not alice.evaluate(  # some chunks after the last part, so far kept only in this browser
        """async (id) => {
            const r = await (await import('./static/store.js')).getUpload(id);
            const unplanned = r.bytes - r.parts.reduce((total, p) => total + p.size, 0);
            return unplanned > 0 && unplanned < r.partSize;  // not the moment before a part is cut
        }""",
        page_upload_id(alice, upload["UploadId"]),
    ):
        assert time.monotonic() < deadline, "no chunk was ever kept beyond the last part"
        alice.wait_for_timeout(50)
    alice.reload()
    offered = alice.get_by_role("region", name="Unfinished uploads").locator(".unfinished")
    expect(offered).to_have_count(1)
    expect(offered.locator(".details")).to_have_text(re.compile(r"^Recording of 0:0[2-9], started "))
    _, before = parts_in_s3(alice, s3, bucket, at_least=1)
    kept = stored_record(alice, page_upload_id(alice, upload["UploadId"]))
    assert kept["kind"] == "recording" and kept["bytes"] > sum(p["Size"] for p in before)
    sent = part_numbers_sent(alice)
    name = offered.locator(".name").inner_text()
    alice.get_by_role("button", name=f"Finish recording upload: {name}").click()
    expect(transfer(alice, name)).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    had = [p["PartNumber"] for p in before]
    assert sent and len(set(sent)) == len(sent) and not set(sent) & set(had), (had, sent)
    assert sorted(had + sent) == list(range(1, len(had) + len(sent) + 1))
    stored = only_object(s3, bucket)
    assert stored["Size"] == kept["bytes"], "every chunk recorded before the reload is in the object"
    assert abs(decoded_seconds(alice, stored["Key"]) - kept["durationMs"] / 1000) < 1.1
    assert pending_uploads(s3, bucket) == [] and browser_storage(alice) == {"uploads": 0, "chunks": 0}
    numbers = list(range(1, len(had) + len(sent) + 1))
    assert (
        sorted(checksums.signed)
        == sorted(checksums.sent)
        == sorted(checksums.completed_checksums())
        == numbers
    )
    assert None not in checksums.sent.values()
    assert checksums.signed == checksums.sent == checksums.completed_checksums()


@pytest.mark.parametrize("site_settings", [{"SOUNDPOST_MULTIPART_PART_BYTES": str(MiB)}], indirect=True)
def test_a_reload_mid_file_upload_resumes_from_the_parts_in_s3(
    alice: Any, s3: devstack.S3Endpoint, bucket: str, stored: Any, tmp_path: Path
) -> None:
    """A large file interrupted by a reload resumes: only the parts S3 lacks are sent again."""
    audio = tone_larger_than(11 * MiB)
    path = tmp_path / "lecture.wav"
    path.write_bytes(audio)
    held: list[Any] = []
    holding = [True]

    def first_four_parts_only(route: Any) -> None:
        # By part number, not by arrival: three parts go out at once, and part 5 may arrive first.
        found = re.search(r"partNumber=(\d+)", route.request.url)
        if route.request.method == "PUT" and holding[0] and found and int(found.group(1)) > 4:
            held.append(route)  # never answered: S3 sees no part past the fourth from this page
            return
        route.continue_()  # routed, so Playwright sees each body the browser sends

    alice.route(re.compile(r"partNumber="), first_four_parts_only)
    alice.locator("#file").set_input_files(path)
    parts_in_s3(alice, s3, bucket, at_least=4)
    deadline = time.monotonic() + S3_WAIT
    while len(held) < 3:  # every part in flight (three) is stuck: nothing more can reach S3
        assert time.monotonic() < deadline, held
        alice.wait_for_timeout(50)
    assert browser_storage(alice)["uploads"] == 1
    holding[0] = False
    alice.reload()
    resume = alice.get_by_role("button", name="Resume upload: lecture.wav")
    expect(resume).to_be_visible()  # and the old page's requests are all reported by now
    sent: list[tuple[int, int]] = []  # (part number, bytes in its body)

    def count(request: Any) -> None:
        found = re.search(r"partNumber=(\d+)", request.url)
        if request.method == "PUT" and found:
            sent.append((int(found.group(1)), len(request.post_data_buffer or b"")))

    alice.on("request", count)
    resume.click()
    expect(transfer(alice, "lecture.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert sorted(n for n, _ in sent) == list(range(5, 13)), sent
    assert sum(size for _, size in sent) == len(audio) - 4 * MiB, sent
    assert stored("lecture.wav") == audio
    assert browser_storage(alice) == {"uploads": 0, "chunks": 0}


def test_discarding_by_keyboard_aborts_the_upload_and_empties_browser_storage(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """The offer is announced; Tab reaches Finish then Discard; Enter twice discards, S3 and IndexedDB keep nothing."""
    start_recording(alice)
    parts_in_s3(alice, s3, bucket, at_least=1)
    alice.reload()
    expect(alice.locator("#announce")).to_have_text(
        '1 unfinished upload: finish or discard it under "Unfinished uploads".'
    )
    name = alice.locator("#unfinished .name").inner_text()
    finish = alice.get_by_role("button", name=f"Finish recording upload: {name}")
    alice.get_by_role("button", name="Sign out").focus()
    alice.keyboard.press("Tab")
    expect(finish).to_be_focused()
    alice.keyboard.press("Tab")
    discard = alice.locator("#unfinished .discard")
    expect(discard).to_be_focused()
    expect(discard).to_have_accessible_name(f"Discard {name}")
    alice.keyboard.press("Enter")
    expect(discard).to_have_accessible_name(f"Really discard {name}? It cannot be undone.")
    alice.keyboard.press("Enter")
    expect(alice.locator("#announce")).to_have_text(f"Discarded {name}.")
    expect(alice.locator("#add-title")).to_be_focused()
    expect(alice.locator("#unfinished-section")).to_be_hidden()
    assert pending_uploads(s3, bucket) == []
    assert browser_storage(alice) == {"uploads": 0, "chunks": 0}


def test_a_recording_outlives_an_ended_session_and_only_its_owner_is_offered_it(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Signed out elsewhere mid-recording, Stop keeps it; Bob on the same browser is not offered it; Alice finishes it."""
    start_recording(alice)
    parts_in_s3(alice, s3, bucket, at_least=1)
    other = alice.context.new_page()
    other.goto("/")
    expect(other.locator("#library")).to_have_attribute("aria-busy", "false")
    expect(other.locator("#unfinished-section")).to_be_hidden()  # the recording tab holds it
    other.get_by_role("button", name="Sign out").click()
    expect(other.locator("#signed-out")).to_be_visible()
    other.close()
    alice.wait_for_timeout(1000)
    alice.get_by_role("button", name="Stop recording").click()
    row = transfer(alice, "recording-")
    expect(row).to_have_attribute("data-state", "failed", timeout=UPLOAD_WAIT)
    expect(row.locator(".message")).to_contain_text("Your session has ended: sign in again")
    expect(row.locator(".message")).to_contain_text(
        'It is kept on this device: finish it from "Unfinished uploads"'
    )
    name = row.locator(".name").inner_text()

    bob = sign_in(alice, "bob", "Bob Example")
    expect(bob.locator("#library-empty")).to_be_visible()
    expect(bob.locator("#unfinished-section")).to_be_hidden()
    assert browser_storage(bob)["uploads"] == 1, "Alice's recording is still kept, just not shown to Bob"
    bob.get_by_role("button", name="Sign out").click()

    sign_in(alice, "alice", "Alice Example")
    alice.get_by_role("button", name=f"Finish recording upload: {name}").click()
    expect(transfer(alice, name)).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert pending_uploads(s3, bucket) == [] and browser_storage(alice) == {"uploads": 0, "chunks": 0}
    wait_playable(listed(alice, name))


def test_a_recording_whose_upload_expired_says_so_and_can_be_discarded(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """When S3 no longer has the unfinished upload, finishing explains why it cannot be, and Discard clears it."""
    start_recording(alice)
    upload, _ = parts_in_s3(alice, s3, bucket, at_least=1)
    alice.reload()
    with admin(s3) as client:  # what a bucket lifecycle rule for incomplete uploads does
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    name = alice.locator("#unfinished .name").inner_text()
    alice.get_by_role("button", name=f"Finish recording upload: {name}").click()
    row = transfer(alice, name)
    expect(row).to_have_attribute("data-state", "failed", timeout=UPLOAD_WAIT)
    expect(row.locator(".message")).to_contain_text("Storage no longer holds this unfinished upload")
    alice.get_by_role("button", name=f"Discard {name}").click()
    alice.get_by_role("button", name=f"Really discard {name}? It cannot be undone.").click()
    expect(alice.locator("#unfinished-section")).to_be_hidden()
    assert browser_storage(alice) == {"uploads": 0, "chunks": 0}


def test_a_browser_refusing_storage_is_told_a_reload_would_lose_the_recording(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """With the site's storage quota used up, the page says what a reload would lose, and still uploads."""
    cdp = alice.context.new_cdp_session(alice)
    origin = re.match(r"https?://[^/]+", alice.url)
    assert origin is not None
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": origin.group(0), "quotaSize": 1})
    start_recording(alice)
    warning = (
        "The browser refused to store more (its storage for this site is full). The recording still uploads "
        "as it goes, but a reload or crash now would lose what has not reached storage yet."
    )
    expect(alice.get_by_role("alert")).to_have_text(warning)
    expect(alice.locator("#announce")).to_have_text(f"Recording. It uploads while you record. {warning}")
    parts_in_s3(alice, s3, bucket, at_least=1)
    alice.get_by_role("button", name="Stop recording").click()
    expect(transfer(alice, "recording-")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert only_object(s3, bucket)["Size"] > PART
    assert browser_storage(alice) == {"uploads": 0, "chunks": 0}


@pytest.mark.parametrize("site_settings", [{"SOUNDPOST_MAX_UPLOAD_BYTES": "100000"}], indirect=True)
def test_a_recording_stops_at_the_largest_upload_allowed_and_is_kept(
    alice: Any, s3: devstack.S3Endpoint, bucket: str
) -> None:
    """Near the size limit the page stops recording, says why, and uploads what was recorded."""
    start_recording(alice)
    problem = alice.locator("#record-error")
    expect(problem).to_have_text(
        "Recording stopped: it reached the largest upload allowed (100 KB). "
        "What was recorded is uploading; start a new recording to go on.",
        timeout=UPLOAD_WAIT,
    )
    expect(alice.get_by_role("button", name="Record", exact=True)).to_have_attribute("aria-pressed", "false")
    expect(transfer(alice, "recording-")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert PART < only_object(s3, bucket)["Size"] <= 100_000


def test_a_pending_upload_is_listed_as_processing_without_a_player(alice: Any) -> None:
    """An upload the server lists as pending (not yet verified) shows as processing and offers no playback."""
    alice.locator("#file").set_input_files({"name": "fresh.wav", "mimeType": "audio/wav", "buffer": tone(1)})
    expect(transfer(alice, "fresh.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)

    def as_pending(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        for item in body["uploads"]:
            item["status"] = "pending"
        route.fulfill(response=answer, json=body)

    playback: list[str] = []
    alice.route(re.compile(r"/api/uploads\?limit="), as_pending)
    alice.on("request", lambda r: playback.append(r.url) if r.url.endswith("/url") else None)
    alice.reload()
    row = listed(alice, "fresh.wav")
    expect(row.locator(".processing")).to_have_text("Processing: it can be played once it has been checked.")
    expect(row.locator("audio")).to_have_count(0)
    expect(row.get_by_role("button", name="Delete fresh.wav")).to_be_visible()
    assert playback == []
