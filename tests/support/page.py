"""The web page in headless Chromium: fixtures and helpers the page test modules share.

A module uses the fixtures by importing the functions (``from tests.support.page import
alice_page``; each is registered under its short name, ``alice``). It sets the app's settings
with a ``site_settings`` fixture and Chromium's flags with ``chromium_args``, of its own or
imported from here (``site_settings_fixture``, ``chromium_args_fixture``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import playwright.sync_api as playwright_api
import pytest

from service import devstack
from service.app import create_app
from tests.support.servers import serve_asgi
from tests.support.tools import require_tool

expect = playwright_api.expect
# Waits, not assertions about speed: the machine running CI may be busy, and 5 s (Playwright's default) is tight.
expect.set_options(timeout=20_000)

MiB = 1024 * 1024
UPLOAD_WAIT = 60_000  # ms: an upper bound on waiting, not an assertion about speed
# Headless, quiet Chromium; the page tests add its fake microphone.
HEADLESS_CHROMIUM = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_ARGS = [*HEADLESS_CHROMIUM, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(name="chromium_args", scope="module")
def chromium_args_fixture() -> list[str]:
    """Chromium's flags; its fake microphone plays a beep."""
    return CHROMIUM_ARGS


@pytest.fixture(name="browser", scope="module")
def browser_fixture(chromium_args: list[str]) -> Iterator[Any]:
    """One Chromium per module; Playwright's sync API holds an event loop open while it runs,
    so it must be gone before other modules call asyncio.run()."""
    chromium = shutil.which("chromium")
    require_tool(chromium is not None, "chromium", "apt-get install chromium")
    with playwright_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=chromium_args)
        yield launched
        launched.close()


@pytest.fixture(name="site_settings")
def site_settings_fixture() -> dict[str, str]:
    """Settings the page's app runs with on top of the test defaults."""
    return {"SOUNDPOST_MAX_UPLOAD_BYTES": str(64 * MiB)}


@pytest.fixture(name="site")
def site_fixture(
    app_env: dict[str, str], s3: devstack.S3Endpoint, bucket: str, site_settings: dict[str, str]
) -> Iterator[str]:
    """The app on 127.0.0.1, its bucket's CORS rule naming the app's origin as a real deployment would."""

    def make(base_url: str) -> object:
        devstack.create_bucket(s3, bucket, [base_url])
        return create_app({**app_env, "SOUNDPOST_PUBLIC_URL": base_url, **site_settings})

    with serve_asgi(make) as url:
        yield url


@pytest.fixture(name="page")
def page_fixture(browser: Any, site: str) -> Iterator[Any]:
    """A fresh browser context per test; any Content-Security-Policy violation fails the test."""
    context = browser.new_context(
        base_url=site, permissions=["microphone"], viewport={"width": 1280, "height": 900}
    )
    tab = context.new_page()
    violations: list[str] = []
    tab.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    yield tab
    context.close()
    assert violations == []


def sign_in(page: Any, user: str, name: str) -> Any:
    """Sign in through the identity provider's own login form; the page then names the user."""
    page.goto("/")
    page.get_by_role("link", name="Sign in with Fake OIDC").click()
    page.locator("input[name=user]").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(name)
    return page


@pytest.fixture(name="alice")
def alice_page(page: Any) -> Any:
    """The page, signed in as alice through the identity provider's own login form."""
    return sign_in(page, "alice", "Alice Example")


@pytest.fixture(name="stored")
def stored_fixture(s3: devstack.S3Endpoint, bucket: str) -> Any:
    """What the bucket holds: key suffix -> bytes (the library's copy once there is one).

    A confirmed upload's staging object lasts until its announcement is made, just after confirm answers.
    """

    def read(suffix: str) -> bytes | None:
        client = devstack.s3_admin(s3)
        found = [i["Key"] for i in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        for key in sorted(found, key=lambda k: "/library/" not in k):
            if key.endswith("/" + suffix):
                return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        return None

    return read


def transfer(page: Any, name: str) -> Any:
    return page.locator(".transfer", has=page.locator(".name", has_text=name))


def listed(page: Any, name: str) -> Any:
    return page.locator("#library .upload", has=page.locator(".name", has_text=name))


def wait_playable(row: Any) -> None:
    """The row's <audio> has loaded the file's metadata from the signed playback URL."""
    row.locator("audio").evaluate(
        """(audio) => new Promise((resolve, reject) => {
            if (audio.readyState >= 1) return resolve();
            audio.addEventListener("loadedmetadata", resolve, { once: true });
            audio.addEventListener("error", () => reject(new Error("audio error " + audio.error?.code)), { once: true });
        })"""
    )


class PartChecksums:
    """What the page sends about each multipart part, watched with ``page.on("request")``.

    ``signed``: part number -> the checksumSha256 its URL was asked for with (None: without one);
    ``sent``: part number -> the x-amz-checksum-sha256 its PUT carried; ``completed``: each complete's parts.
    """

    SIGN = re.compile(r"/s3/multipart/[^/?]+/(\d+)\?")
    PUT = re.compile(r"[?&]partNumber=(\d+)")

    def __init__(self, page: Any) -> None:
        self.signed: dict[int, str | None] = {}
        self.sent: dict[int, str | None] = {}
        self.completed: list[list[dict[str, Any]]] = []
        page.on("request", self.note)

    def note(self, request: Any) -> None:
        query = parse_qs(urlsplit(request.url).query)
        if request.method == "GET" and (found := self.SIGN.search(request.url)):
            self.signed[int(found.group(1))] = query.get("checksumSha256", [None])[0]
        elif request.method == "PUT" and (found := self.PUT.search(request.url)):
            self.sent[int(found.group(1))] = request.headers.get("x-amz-checksum-sha256")
        elif request.method == "POST" and re.search(r"/s3/multipart/[^/?]+/complete\?", request.url):
            self.completed.append(json.loads(request.post_data)["parts"])

    def completed_checksums(self) -> dict[int, str | None]:
        """The last complete's parts: number -> the ChecksumSHA256 it named."""
        return {part["PartNumber"]: part.get("ChecksumSHA256") for part in self.completed[-1]}
