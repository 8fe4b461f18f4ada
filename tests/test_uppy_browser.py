"""An unmodified Uppy, fetched from npm, uploads through /s3/* in a real headless Chromium.

The harness page and Uppy's prebuilt bundle are served by test-only routes on the
app's own origin, so Uppy's requests carry the session cookie exactly as on a
customer's page. Each pinned release is driven with the option that points it at
Companion-style routes: ``companionEndpoint`` (v6) or ``endpoint`` (v5).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from service import devstack
from service.app import create_app
from service.core import keys
from tests.support import audio_samples
from tests.support.page import HEADLESS_CHROMIUM
from tests.support.r2proxy import r2_like
from tests.support.rgw import rgw_endpoint  # noqa: F401  (fixture, requested by name)
from tests.support.s3 import admin, object_keys, stored_object
from tests.support.servers import serve_asgi
from tests.support.settings import s3_settings
from tests.support.tools import require_tool

MiB = 1024 * 1024
# The uppy package's prebuilt bundle (it exports Uppy and AwsS3), with the option each major calls Companion by.
UPPY_RELEASES = {"6.0.1": "companionEndpoint", "5.2.4": "endpoint"}
UPLOAD_TIMEOUT_MS = 120_000  # a bound on a hang, not a performance assertion
ETAG_STALL = "Could not read the ETag header"
ALICE_PREFIX = keys.user_prefix("uploads/", keys.user_id("fake", "alice"))

HARNESS = """<!doctype html>
<meta charset="utf-8">
<title>Uppy harness</title>
<script type="module">
import { Uppy, AwsS3 } from "/test/uppy/%(version)s/uppy.min.mjs";

// Uppy 5 reports an S3 answer without a readable ETag only on the console, then never settles.
window.consoleErrors = [];
const consoleError = console.error.bind(console);
console.error = (...args) => { window.consoleErrors.push(args.map(String).join(" ")); consoleError(...args); };

// Upload one file made from the bytes at /test/sample/<name>; report what Uppy reported.
// On a store without POST uploads declareSize sends metadata[size]: a presigned PUT signs the exact length.
window.uploadWithUppy = async (name, type, { declareSize = false } = {}) => {
  const data = await (await fetch(`/test/sample/${encodeURIComponent(name)}`)).blob();
  const uppy = new Uppy();
  uppy.use(AwsS3, {
    %(option)s: location.origin,
    shouldUseMultipart: (file) => file.size > 6 * 1024 * 1024,
    getChunkSize: () => 5 * 1024 * 1024,
  });
  const errors = [];
  uppy.on("upload-error", (file, error) => errors.push(String(error)));
  uppy.on("error", (error) => errors.push(String(error)));
  uppy.addFile({ name, type, data, meta: declareSize ? { size: data.size } : {} });
  const result = await uppy.upload();
  return {
    successful: (result?.successful ?? []).map((f) => ({ name: f.name, uploadURL: f.uploadURL ?? null })),
    failed: (result?.failed ?? []).map((f) => ({ name: f.name, error: String(f.error) })),
    errors,
  };
};
</script>
"""


def fetch_uppy(version: str, cache: Path) -> Path:
    """``dist/uppy.min.mjs`` of ``uppy@version`` from the npm registry, kept under .pytest_cache (never committed)."""
    bundle = cache / version / "uppy.min.mjs"
    if bundle.exists():
        return bundle
    with tempfile.TemporaryDirectory(dir=cache) as work:
        packed = subprocess.run(
            ["npm", "pack", f"uppy@{version}", "--pack-destination", work, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert packed.returncode == 0, packed.stderr
        with tarfile.open(Path(work) / f"uppy-{version}.tgz") as tgz:
            tgz.extract("package/dist/uppy.min.mjs", work, filter="data")
        bundle.parent.mkdir(exist_ok=True)
        os.replace(Path(work) / "package/dist/uppy.min.mjs", bundle)
    return bundle


@pytest.fixture(scope="module", params=list(UPPY_RELEASES))
def uppy_bundle(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> tuple[str, Path]:
    """(version, path of its bundle) for each pinned Uppy release."""
    require_tool(shutil.which("npm") is not None, "npm", "apt-get install npm")
    version: str = request.param
    return version, fetch_uppy(version, Path(pytestconfig.cache.mkdir("uppy")))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; Playwright's sync API (and its event loop) lives only as long as this module."""
    chromium = shutil.which("chromium")
    require_tool(chromium is not None, "chromium", "apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=HEADLESS_CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def samples() -> dict[str, bytes]:
    """What the harness page may fetch as a file's bytes; tests put their files here."""
    return {}


@pytest.fixture(params=["moto", "rgw"])
def target(request: pytest.FixtureRequest, s3: devstack.S3Endpoint) -> Iterator[devstack.S3Endpoint]:
    """The S3 server Uppy talks to (``r2``: moto behind an R2-like front that refuses POST uploads)."""
    if request.param == "moto":
        yield s3
    elif request.param == "r2":
        with r2_like(s3) as front:
            yield front
    else:
        endpoint: devstack.S3Endpoint = request.getfixturevalue("rgw_endpoint")
        yield endpoint


@pytest.fixture
def app_env(app_env: dict[str, str], target: devstack.S3Endpoint) -> dict[str, str]:
    return {
        **app_env,
        **s3_settings(target, f"uppy-{secrets.token_hex(6)}"),
        "SOUNDPOST_MAX_UPLOAD_BYTES": str(16 * MiB),
    }


@pytest.fixture
def harness_url(
    app_env: dict[str, str],
    target: devstack.S3Endpoint,
    uppy_bundle: tuple[str, Path],
    samples: dict[str, bytes],
) -> Iterator[str]:
    """The app plus test-only routes for the harness page, Uppy's bundle and the sample bytes; yields its origin."""
    version, bundle = uppy_bundle

    async def page(request: Request) -> Response:
        return HTMLResponse(HARNESS % {"version": version, "option": UPPY_RELEASES[version]})

    async def script(request: Request) -> Response:
        return FileResponse(bundle, media_type="text/javascript")

    async def sample(request: Request) -> Response:
        return Response(samples[request.path_params["name"]], media_type="application/octet-stream")

    def make(url: str) -> object:
        # The browser PUTs and POSTs to the bucket from this origin, and reads part ETags.
        devstack.create_bucket(target, app_env["SOUNDPOST_S3_BUCKET"], [url])
        app = create_app({**app_env, "SOUNDPOST_PUBLIC_URL": url})
        app.router.routes.extend(
            [
                Route("/test/harness", page),
                Route(f"/test/uppy/{version}/uppy.min.mjs", script),
                Route("/test/sample/{name}", sample),
            ]
        )
        return app

    with serve_asgi(make) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and a page in it."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, origin: str, user: str) -> None:
    """Through the fake provider's form, as a person would."""
    page.goto(f"{origin}/auth/login?provider=fake")
    page.fill("input[name=user]", user)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{origin}/**")
    assert page.evaluate("fetch('/api/me').then((r) => r.status)") == 200


def upload(
    page: Page, origin: str, name: str, content_type: str, options: dict[str, bool] | None = None
) -> dict[str, Any] | None:
    """Open the harness and let Uppy upload one sample; what Uppy reported, or None if it stalled on a missing ETag."""
    page.goto(f"{origin}/test/harness")
    page.wait_for_function("typeof window.uploadWithUppy === 'function'")
    # Started, not awaited: a hung upload then fails the wait below instead of hanging the suite.
    page.evaluate(
        "([n, t, o]) => { uploadWithUppy(n, t, o).then((r) => { window.uppyResult = r; },"
        " (e) => { window.uppyResult = {successful: [], failed: [], errors: [`harness: ${e}`]}; }); }",
        [name, content_type, options or {}],
    )
    stalled = f"window.consoleErrors.some((m) => m.includes({json.dumps(ETAG_STALL)}))"
    page.wait_for_function(f"window.uppyResult !== undefined || {stalled}", timeout=UPLOAD_TIMEOUT_MS)
    result: dict[str, Any] | None = page.evaluate("window.uppyResult ?? null")
    return result


def only_key(s3: devstack.S3Endpoint, bucket: str) -> str:
    found = object_keys(s3, bucket)
    assert len(found) == 1, found
    return found[0]


def landed_under_alice(target: devstack.S3Endpoint, bucket: str, name: str, data: bytes) -> str:
    """The one object in the bucket: under alice's prefix, named ``name``, holding ``data`` as audio/wav."""
    key = only_key(target, bucket)
    assert key.startswith(ALICE_PREFIX) and key.endswith(f"/{name}")
    assert stored_object(target, bucket, key) == (data, "audio/wav")
    return key


def confirm(page: Page, key: str) -> dict[str, Any]:
    """``POST /api/uploads/{id}/confirm`` from the page, as the app's own page does after an upload."""
    parsed = keys.parse_key("uploads/", key)
    assert parsed is not None
    script = "(id) => fetch(`/api/uploads/${id}/confirm`, {method: 'POST'}).then(async (r) => [r.status, await r.json()])"
    status, body = page.evaluate(script, parsed[1])
    assert status == 200, body
    return dict(body)


def assert_clean(result: dict[str, Any] | None, name: str) -> None:
    assert result is not None, "Uppy stalled: S3 answered without a readable ETag"
    assert result["errors"] == [] and result["failed"] == [], json.dumps(result)
    assert [f["name"] for f in result["successful"]] == [name]


def test_uppy_uploads_a_small_wav_with_one_signed_post(
    page: Page,
    harness_url: str,
    target: devstack.S3Endpoint,
    app_env: dict[str, str],
    samples: dict[str, bytes],
    uppy_bundle: tuple[str, Path],
) -> None:
    """A small file goes up as the presigned POST /s3/params gives; it lands under alice's prefix, intact, and confirms."""
    samples["take.wav"] = data = audio_samples.wav(1.5)
    sign_in(page, harness_url, "alice")
    result = upload(page, harness_url, "take.wav", "audio/wav")
    bucket = app_env["SOUNDPOST_S3_BUCKET"]
    key = only_key(target, bucket)
    assert key.startswith(ALICE_PREFIX) and key.endswith("/take.wav")
    assert stored_object(target, bucket, key) == (data, "audio/wav")
    confirmed = confirm(page, key)
    assert confirmed["size"] == len(data) and confirmed["durationSeconds"] == 1.5
    if result is None and uppy_bundle[0].startswith("5."):
        # Soundpost's part worked (the POST Uppy built from /s3/params stored the file); the S3 stand-in's answer did not.
        pytest.xfail("Uppy 5 needs the ETag header on the POST answer; AWS sends it, moto and radosgw do not")
    assert_clean(result, "take.wav")


def test_uppy_uploads_a_large_wav_in_parts(
    page: Page,
    harness_url: str,
    target: devstack.S3Endpoint,
    app_env: dict[str, str],
    samples: dict[str, bytes],
) -> None:
    """11 MiB goes up as a multipart upload (5 MiB, 5 MiB, 1 MiB) that assembles into the original bytes and confirms."""
    samples["meeting.wav"] = data = audio_samples.wav_of(os.urandom(11 * MiB - 44))
    sign_in(page, harness_url, "alice")
    parts: list[str] = []
    page.on(
        "request", lambda r: parts.append(r.url) if r.method == "PUT" and "partNumber=" in r.url else None
    )
    result = upload(page, harness_url, "meeting.wav", "audio/wav")
    assert_clean(result, "meeting.wav")
    assert len(parts) == 3, parts
    bucket = app_env["SOUNDPOST_S3_BUCKET"]
    key = only_key(target, bucket)
    assert key.startswith(ALICE_PREFIX) and key.endswith("/meeting.wav")
    assert stored_object(target, bucket, key) == (data, "audio/wav")
    with admin(target) as client:
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert confirm(page, key)["size"] == len(data)


@pytest.mark.parametrize(
    "target", ["moto"], indirect=True
)  # nothing may reach S3, so one S3 server is enough
@pytest.mark.parametrize(("name", "size"), [("small.wav", 0), ("large.wav", 7 * MiB)])
def test_uppy_signed_out_fails_with_401_and_stores_nothing(
    page: Page,
    harness_url: str,
    target: devstack.S3Endpoint,
    app_env: dict[str, str],
    samples: dict[str, bytes],
    name: str,
    size: int,
) -> None:
    """Without a session the /s3 routes answer 401, Uppy reports the upload failed, and the bucket stays empty."""
    samples[name] = audio_samples.wav_of(os.urandom(size)) if size else audio_samples.wav(1)
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.request.method, r.status)) if "/s3/" in r.url else None)
    result = upload(page, harness_url, name, "audio/wav")
    assert result is not None
    assert result["successful"] == [] and [f["name"] for f in result["failed"]] == [name]
    assert result["errors"], result
    assert answers and all(status == 401 for _, status in answers), answers
    bucket = app_env["SOUNDPOST_S3_BUCKET"]
    assert object_keys(target, bucket) == []
    with admin(target) as client:
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("target", ["r2"], indirect=True)
def test_uppy_uploads_through_a_store_without_post_uploads(
    page: Page,
    harness_url: str,
    target: devstack.S3Endpoint,
    app_env: dict[str, str],
    samples: dict[str, bytes],
    uppy_bundle: tuple[str, Path],
) -> None:
    """Behind an R2-like store (501 to POST Object): Uppy 5 PUTs what /s3/params signs; Uppy 6 goes by parts.

    Uppy 6's Companion mode always sends a simple upload as a form POST, whatever /s3/params
    answers, so on such a store it uploads only what it sends in parts (over one 5 MiB part).
    """
    uppy6 = uppy_bundle[0].startswith("6.")
    samples["take.wav"] = data = (
        audio_samples.wav_of(os.urandom(7 * MiB)) if uppy6 else audio_samples.wav(1.5)
    )
    sign_in(page, harness_url, "alice")
    methods: list[str] = []
    page.on("request", lambda r: methods.append(r.method) if r.url.startswith(target.url) else None)
    result = upload(page, harness_url, "take.wav", "audio/wav", {"declareSize": True})
    assert_clean(result, "take.wav")
    assert "PUT" in methods and (uppy6 or "POST" not in methods)  # Uppy 6 POSTs only to create and complete
    key = landed_under_alice(target, app_env["SOUNDPOST_S3_BUCKET"], "take.wav", data)
    assert confirm(page, key)["size"] == len(data)
