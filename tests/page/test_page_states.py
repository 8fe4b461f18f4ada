"""Every state of the page, at a laptop's and a phone's width: axe-core finds no serious or critical
problem, nothing is wider than the screen, and each state is saved as a screenshot.

Screenshots go to artifacts/ (never committed); to refresh the ones in docs/screenshots/:

    SOUNDPOST_SCREENSHOTS=docs/screenshots python3 run.py test -n 0 tests/page/test_page_states.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.accessibility import (  # noqa: F401  (fixture, requested by name)
    assert_accessible,
    axe_source_fixture,
    violations,
)
from tests.support.audio_samples import tone
from tests.support.page import UPLOAD_WAIT, expect, listed, transfer, wait_playable

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / os.environ.get("SOUNDPOST_SCREENSHOTS", "artifacts")


def shoot(page: Any, axe_source: str, state: str, width: int) -> None:
    """Check the state with axe, check nothing overflows the screen, and save it."""
    page.mouse.move(0, 0)  # no hover effects in the picture
    assert_accessible(page, axe_source, state)
    overflow = page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
    assert overflow is False, f"something is wider than the screen in the {state} state"
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = SHOTS / f"page-{state}-{width}.png"
    page.screenshot(path=str(target), full_page=True, animations="disabled", caret="hide")
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == width


def pick(page: Any, name: str, data: bytes, content_type: str = "audio/wav") -> None:
    page.locator("#file").set_input_files({"name": name, "mimeType": content_type, "buffer": data})


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["laptop", "phone"])
def test_every_state_is_accessible_fits_the_screen_and_is_pictured(
    page: Any, axe_source: str, bucket: str, width: int, height: int
) -> None:
    """Signed out, signed in, uploading, recording, the list, and errors: each passes axe at this width."""
    page.set_viewport_size({"width": width, "height": height})
    page.goto("/")
    expect(page.locator("#providers a")).to_have_count(2)
    shoot(page, axe_source, "signed-out", width)

    page.get_by_role("link", name="Sign in with Fake OIDC").click()
    page.locator("input[name=user]").fill("alice")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Alice Example")
    expect(page.locator("#library-empty")).to_be_visible()
    expect(page.locator("#limits")).not_to_be_empty()
    shoot(page, axe_source, "signed-in", width)

    held: list[Any] = []
    page.route(re.compile(rf"/{bucket}$"), lambda route: held.append(route))  # S3 holds the POST: uploading
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith(f"/{bucket}")):
        pick(page, "field notes.wav", tone(2))
    expect(transfer(page, "field notes.wav")).to_have_attribute("data-state", "uploading")
    shoot(page, axe_source, "uploading", width)
    transfer(page, "field notes.wav").get_by_role("button", name="Cancel uploading field notes.wav").click()
    expect(transfer(page, "field notes.wav")).to_have_attribute("data-state", "cancelled")
    page.unroute(re.compile(rf"/{bucket}$"))

    page.get_by_role("button", name="Record", exact=True).click()
    expect(page.locator("#record-time")).to_have_text("0:02", timeout=10_000)
    shoot(page, axe_source, "recording", width)
    page.get_by_role("button", name="Stop recording").click()
    expect(transfer(page, "recording-")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)

    pick(page, "morning take.wav", tone(3))
    expect(transfer(page, "morning take.wav")).to_have_attribute("data-state", "done", timeout=UPLOAD_WAIT)
    wait_playable(listed(page, "morning-take.wav"))
    shoot(page, axe_source, "list", width)

    pick(page, "notes.txt", b"words", "text/plain")
    pick(page, "fake.wav", b"not a wave file at all")
    expect(transfer(page, "notes.txt")).to_have_attribute("data-state", "refused")
    expect(transfer(page, "fake.wav")).to_have_attribute("data-state", "refused", timeout=UPLOAD_WAIT)
    shoot(page, axe_source, "error", width)


def test_the_accessibility_check_fails_on_a_real_problem(page: Any, axe_source: str) -> None:
    """The check can fail: a button without a name and grey-on-white text are serious findings."""
    page.goto("/")
    expect(page.locator("#providers a")).to_have_count(2)
    page.evaluate(
        """() => {
            const button = document.createElement("button");
            const faint = Object.assign(document.createElement("p"), { textContent: "faint words" });
            faint.style.color = "#cccccc";
            document.querySelector("main").append(button, faint);
        }"""
    )
    found = {v["id"] for v in violations(page, axe_source)}
    assert {"button-name", "color-contrast"} <= found, found
