"""The web page, end to end in headless Chromium against the app under uvicorn, moto's S3 and a fake IdP."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from service import devstack
from tests.support.audio_samples import tone, tone_larger_than
from tests.support.page import UPLOAD_WAIT, MiB, PartChecksums, expect, listed, transfer, wait_playable


def drop(page: Any, name: str, data: bytes, content_type: str) -> None:
    """Drop a file on the drop zone the way the browser does: a drop event carrying a DataTransfer."""
    files = page.evaluate_handle(
        """([name, b64, type]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type }));
            return dt;
        }""",
        [name, base64.b64encode(data).decode(), content_type],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": files})


def pick(page: Any, name: str, data: bytes, content_type: str) -> None:
    page.locator("#file").set_input_files({"name": name, "mimeType": content_type, "buffer": data})


def sha256_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_signed_out_page_offers_one_sign_in_button_per_provider(page: Any) -> None:
    """Signed out, the page shows the app's name and a button for each configured identity provider."""
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Soundpost")
    links = page.locator("#providers a")
    expect(links).to_have_text(["Sign in with Fake OIDC", "Sign in with Hub"])
    expect(page.locator("#signed-in")).to_be_hidden()


def test_page_csp_allows_only_the_app_and_the_s3_endpoint(page: Any, s3: devstack.S3Endpoint) -> None:
    """The page's Content-Security-Policy forbids inline code and names no origin but the app and S3."""
    answer = page.goto("/")
    csp = answer.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == f"'self' {s3.url}"
    assert directives["media-src"] == f"'self' {s3.url}"
    sources = {source for value in directives.values() for source in value.split()}
    assert sources <= {"'self'", "'none'", s3.url}, "no inline code, no data: or blob:, no other origin"


def test_sign_in_through_the_identity_provider_shows_who_you_are(alice: Any) -> None:
    """After the provider's form, the page names the user and offers sign-out, the drop zone and Record."""
    expect(alice.get_by_role("button", name="Sign out")).to_be_visible()
    expect(alice.get_by_text("Choose audio files")).to_be_visible()
    expect(alice.get_by_role("button", name="Record")).to_be_visible()


def test_keyboard_reaches_every_control_in_order_and_opens_the_file_chooser(alice: Any) -> None:
    """Tab goes sign out, file picker, Record; Space on the picker opens the chooser and the upload proceeds."""
    # Playwright asks the browser to intercept file choosers without waiting for the answer, so a
    # chooser opened right after expect_file_chooser() can be missed; subscribe well before Space.
    alice.on("filechooser", lambda chooser: None)
    sign_out = alice.get_by_role("button", name="Sign out")
    sign_out.focus()
    expect(sign_out).to_be_focused()
    for following in ("#file", "#record"):
        alice.keyboard.press("Tab")
        expect(alice.locator(following)).to_be_focused()
    alice.keyboard.press("Shift+Tab")
    expect(alice.locator("#file")).to_be_focused()
    with alice.expect_file_chooser() as chooser:
        alice.keyboard.press("Space")
    chooser.value.set_files({"name": "keys.txt", "mimeType": "text/plain", "buffer": b"typed"})
    expect(transfer(alice, "keys.txt")).to_have_attribute("data-state", "refused")
    expect(alice.locator("#announce")).to_contain_text("keys.txt: Soundpost does not take this kind of file")


def test_a_non_audio_file_is_refused_with_a_clear_message(alice: Any, stored: Any) -> None:
    """A text file is refused by the API; the page says what to do in one sentence, the code apart, and nothing is stored."""
    pick(alice, "notes.txt", b"just some words\n", "text/plain")
    row = transfer(alice, "notes.txt")
    expect(row).to_have_attribute("data-state", "refused")
    expect(row.locator(".message")).to_have_text(
        "Soundpost does not take this kind of file: choose an MP3, M4A, AAC, WAV, WebM, Ogg, Opus or FLAC file."
    )
    expect(row.locator(".code")).to_have_text("Code for support: unsupported_type")
    expect(row.get_by_role("button", name="Cancel uploading notes.txt")).to_be_hidden()
    expect(
        row.get_by_role("button", name="Retry notes.txt")
    ).to_be_hidden()  # the same file would be refused again
    expect(alice.locator("#finished .transfer")).to_have_count(1)
    expect(alice.locator("#transfers-section")).to_be_hidden()
    expect(alice.locator("#announce")).to_contain_text("notes.txt: Soundpost does not take this kind of file")
    assert stored("notes.txt") is None


def test_a_picked_file_uploads_to_100_percent_and_is_listed_and_playable(alice: Any, stored: Any) -> None:
    """A WAV chosen with the file picker goes straight to S3, reaches 100%, is confirmed and plays."""
    audio = tone(2)
    pick(alice, "picked.wav", audio, "audio/wav")
    row = transfer(alice, "picked.wav")
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    expect(row.locator("progress")).to_have_attribute("value", "100")
    expect(row.locator(".percent")).to_have_text("100%")
    expect(row.locator(".speed")).to_have_text(re.compile(r"^[1-9]\d*(\.\d)? [KMG]?B/s$"))
    assert stored("picked.wav") == audio
    item = listed(alice, "picked.wav")
    wait_playable(item)
    expect(item.locator(".duration")).to_have_text("0:02")


def test_a_dropped_file_uploads_and_uploads_are_listed_newest_first(alice: Any, stored: Any) -> None:
    """A WAV dropped on the drop zone uploads too; after a reload both are listed, newest first, playable."""
    pick(alice, "first.wav", tone(1), "audio/wav")
    expect(transfer(alice, "first.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    dropped = tone(1, pitch=660)
    drop(alice, "second.wav", dropped, "audio/wav")
    expect(transfer(alice, "second.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert stored("second.wav") == dropped
    alice.reload()
    expect(alice.locator("#library .name")).to_have_text(["second.wav", "first.wav"])
    for name in ("second.wav", "first.wav"):
        wait_playable(listed(alice, name))


def test_an_upload_that_races_the_first_listing_is_listed_once(page: Any) -> None:
    """When the library listing answers after an upload is confirmed (and so includes it), the upload shows once."""
    held: list[Any] = []

    def hold_the_first_listing(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/api/uploads\?limit="), hold_the_first_listing)
    page.goto("/")
    page.get_by_role("link", name="Sign in with Fake OIDC").click()
    page.locator("input[name=user]").fill("alice")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Alice Example")
    pick(page, "raced.wav", tone(1), "audio/wav")
    expect(transfer(page, "raced.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert len(held) == 1, "the first listing was held back until the upload was confirmed"
    held[0].continue_()
    expect(page.locator("#library")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#library .name")).to_have_text(["raced.wav"])
    wait_playable(listed(page, "raced.wav"))


def test_a_large_file_goes_up_in_several_parts(alice: Any, stored: Any, tmp_path: Path) -> None:
    """A file above the threshold is sent as multipart: one PUT per 5 MiB part, then completed and confirmed.

    Every part's SHA-256 goes with it: in the request for its URL, as its PUT's header, and at complete.
    """
    audio = tone_larger_than(11 * MiB)
    path = tmp_path / "long.wav"
    path.write_bytes(audio)
    checksums = PartChecksums(alice)
    alice.locator("#file").set_input_files(path)
    row = transfer(alice, "long.wav")
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    expect(row.locator(".percent")).to_have_text("100%")
    slices = [audio[i : i + 5 * MiB] for i in range(0, len(audio), 5 * MiB)]
    expected = {n: sha256_of(part) for n, part in enumerate(slices, start=1)}
    assert len(expected) == 3
    assert checksums.signed == expected and checksums.sent == expected
    assert checksums.completed_checksums() == expected
    assert stored("long.wav") == audio
    wait_playable(listed(alice, "long.wav"))


def test_a_multipart_upload_resumes_after_the_network_drops(alice: Any, stored: Any, tmp_path: Path) -> None:
    """When a part's PUT is cut off, the page asks S3 which parts it has and sends only what is missing."""
    audio = tone_larger_than(11 * MiB)
    path = tmp_path / "dropped.wav"
    path.write_bytes(audio)
    cut: list[str] = []

    def cut_part_two_once(route: Any) -> None:
        if route.request.method == "PUT" and "partNumber=2" in route.request.url and not cut:
            cut.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    listings: list[str] = []

    def record_listing(request: Any) -> None:
        if request.method == "GET" and re.search(r"/s3/multipart/[^/?]+\?key=", request.url):
            listings.append(request.url)

    alice.on("request", record_listing)
    alice.route(re.compile(r"partNumber="), cut_part_two_once)
    alice.locator("#file").set_input_files(path)
    expect(transfer(alice, "dropped.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    assert len(cut) == 1 and listings, (
        "the drop happened and the page listed the stored parts before resuming"
    )
    assert stored("dropped.wav") == audio


def test_recording_from_the_microphone_uploads_it(alice: Any, stored: Any) -> None:
    """Record captures Chromium's fake microphone; Stop uploads the recording, which is listed and playable."""
    record = alice.get_by_role("button", name="Record")
    record.click()
    stop = alice.get_by_role("button", name="Stop recording")
    expect(stop).to_have_attribute("aria-pressed", "true")
    expect(alice.locator("#record-time")).to_have_text("0:02", timeout=10_000)
    stop.click()
    row = alice.locator(".transfer", has=alice.locator(".name", has_text="recording-"))
    expect(row).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    name = row.locator(".name").inner_text()
    assert name.endswith(".webm")
    recorded = stored(name)
    assert recorded is not None and recorded.startswith(b"\x1a\x45\xdf\xa3")  # EBML: a WebM container
    wait_playable(listed(alice, name))


def test_delete_removes_the_upload_from_the_list_and_the_bucket(alice: Any, stored: Any) -> None:
    """Delete asks once more, then removes the upload from the page and the object from the bucket."""
    pick(alice, "doomed.wav", tone(1), "audio/wav")
    item = listed(alice, "doomed.wav")
    expect(item).to_be_visible(timeout=UPLOAD_WAIT)
    item.get_by_role("button", name="Delete doomed.wav").click()
    item.get_by_role("button", name="Really delete doomed.wav?").click()
    expect(item).to_have_count(0)
    expect(alice.locator("#announce")).to_have_text("Deleted doomed.wav.")
    assert stored("doomed.wav") is None
    alice.reload()
    expect(alice.locator("#library-empty")).to_be_visible()


def test_a_file_whose_bytes_are_not_audio_is_refused_after_upload(alice: Any, stored: Any) -> None:
    """A text file named .wav passes the type check but not confirm: the page says so and it is gone."""
    pick(alice, "fake.wav", b"not a wave file at all", "audio/wav")
    row = transfer(alice, "fake.wav")
    expect(row).to_have_attribute("data-state", "refused", timeout=UPLOAD_WAIT)
    expect(row.locator(".message")).to_contain_text(
        "does not hold audio Soundpost can play, so it was not kept"
    )
    expect(row.locator(".code")).to_have_text("Code for support: not_audio")
    assert stored("fake.wav") is None


def test_cancel_stops_an_upload_in_flight(alice: Any, stored: Any, bucket: str) -> None:
    """Cancel aborts the upload while S3 has not answered; the row says Cancelled and nothing is stored."""
    held: list[Any] = []
    alice.route(re.compile(rf"/{bucket}$"), lambda route: held.append(route))  # S3 never answers the POST
    with alice.expect_request(lambda r: r.method == "POST" and r.url.endswith(f"/{bucket}")):
        pick(alice, "halted.wav", tone(1), "audio/wav")
    row = transfer(alice, "halted.wav")
    row.get_by_role("button", name="Cancel uploading halted.wav").click()
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.locator(".message")).to_have_text("Cancelled: nothing was kept.")
    expect(row.locator("progress")).to_be_hidden()  # a cancelled row has no half-full bar that looks paused
    expect(row.get_by_role("button", name="Retry halted.wav")).to_be_visible()
    assert stored("halted.wav") is None


def test_cancelling_a_multipart_upload_aborts_it_at_s3(
    alice: Any, stored: Any, s3: devstack.S3Endpoint, bucket: str, tmp_path: Path
) -> None:
    """Cancel during a multipart upload stops the parts and aborts the upload, so S3 keeps no orphan parts."""
    path = tmp_path / "abandoned.wav"
    path.write_bytes(tone_larger_than(11 * MiB))
    held: list[Any] = []
    alice.route(re.compile(r"partNumber="), lambda route: held.append(route))  # parts never finish
    with alice.expect_request(lambda r: r.method == "PUT" and "partNumber=" in r.url):
        alice.locator("#file").set_input_files(path)
    row = transfer(alice, "abandoned.wav")
    with alice.expect_response(
        lambda r: r.request.method == "DELETE" and "/s3/multipart/" in r.url
    ) as aborted:
        row.get_by_role("button", name="Cancel uploading abandoned.wav").click()
    assert aborted.value.status == 200
    expect(row).to_have_attribute("data-state", "cancelled")
    assert devstack.s3_admin(s3).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert stored("abandoned.wav") is None


def test_sign_out_returns_to_the_signed_out_page(alice: Any) -> None:
    """Sign out ends the session: the page offers the providers again and the API no longer knows the user."""
    alice.get_by_role("button", name="Sign out").click()
    expect(alice.locator("#providers a")).to_have_count(2)
    expect(alice.locator("#signed-in")).to_be_hidden()
    assert alice.request.get("/api/me").status == 401
