"""Cross-site refusal, security headers, and what the logs may never contain."""

from __future__ import annotations

import asyncio
import logging
import threading

import httpx
import pytest
from starlette.requests import Request

from service.errors import ApiError
from service.http.params import MAX_JSON_BODY, read_json_body
from service.observability import JsonFormatter
from tests.conftest import serve_app
from tests.support.fake_idp import CLIENT_SECRET, FakeIdP
from tests.support.flows import approve_at_idp, follow_callback, start_login

PRESIGN = "/api/upload/presigned-url"
BODY = {"filename": "a.wav", "contentType": "audio/wav"}


def code_of(answer: httpx.Response) -> str:
    return answer.json()["error"]["code"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=[
        "foreign-origin",
        "foreign-origin-and-site",
        "opaque-origin",
        "cross-site-no-origin",
        "sibling-subdomain",
    ],
)
def test_cross_site_presign_is_refused_before_any_work(alice: httpx.Client, headers: dict[str, str]) -> None:
    """A browser that says the request comes from another site gets 403, whatever else it sends."""
    answer = alice.post(PRESIGN, json=BODY, headers=headers)
    assert answer.status_code == 403
    assert code_of(answer) == "cross_site_request"


def test_a_cross_site_html_form_post_is_refused(alice: httpx.Client) -> None:
    """The classic CSRF: a form on another site posting with the victim's cookie."""
    answer = alice.post(
        PRESIGN,
        data={"filename": "a.wav", "contentType": "audio/wav"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_same_site_body_that_is_not_json_is_415(
    alice: httpx.Client, app_url: str, content_type: str
) -> None:
    """Simple (CORS-preflight-free) content types are refused, so no form can forge a JSON call."""
    answer = alice.post(
        PRESIGN,
        content=b'{"filename": "a.wav", "contentType": "audio/wav"}',
        headers={"Content-Type": content_type, "Origin": app_url},
    )
    assert answer.status_code == 415
    assert code_of(answer) == "unsupported_media_type"


def test_a_missing_content_type_is_415(alice: httpx.Client) -> None:
    """No Content-Type at all is not JSON either."""
    answer = alice.post(PRESIGN, content=b'{"filename": "a.wav", "contentType": "audio/wav"}')
    assert answer.status_code == 415


def test_a_configured_extra_origin_may_post(app_env: dict[str, str]) -> None:
    """SOUNDPOST_TRUSTED_ORIGINS lets a named other site make state-changing calls."""
    env = {**app_env, "SOUNDPOST_TRUSTED_ORIGINS": "https://admin.example"}
    with serve_app(env) as url, httpx.Client(base_url=url) as c:
        assert (
            c.post(
                "/auth/logout", headers={"Origin": "https://admin.example", "Sec-Fetch-Site": "cross-site"}
            ).status_code
            == 204
        )
        assert c.post("/auth/logout", headers={"Origin": "https://other.example"}).status_code == 403


def test_an_oversized_json_body_is_413_even_without_content_length(alice: httpx.Client) -> None:
    """A streamed body is cut off at the limit rather than read to the end."""

    def chunks() -> object:
        yield b'{"filename": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'", "contentType": "audio/wav"}'

    answer = alice.post(PRESIGN, content=chunks(), headers={"Content-Type": "application/json"})  # type: ignore[arg-type]
    assert answer.status_code == 413
    assert code_of(answer) == "body_too_large"


@pytest.mark.parametrize(
    "path", ["/", "/api/me", "/api/providers", "/healthz", "/openapi.json", "/nope", "/static/app.js"]
)
def test_every_response_carries_the_security_headers(client: httpx.Client, path: str) -> None:
    """nosniff and no framing on pages, JSON, errors and static files alike."""
    headers = client.get(path).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "strict-transport-security" not in headers  # plain http: HSTS would be meaningless


@pytest.mark.parametrize("path", ["/api/me", "/api/providers", "/healthz", "/nope"])
def test_json_answers_are_never_stored_by_caches(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"


def test_a_presigned_post_is_never_stored_by_caches(alice: httpx.Client) -> None:
    answer = alice.post(PRESIGN, json=BODY)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "accept"), [("/", "*/*"), ("/static/app.js", "*/*"), ("/nope", "text/html")]
)
def test_documents_also_carry_the_document_headers(client: httpx.Client, path: str, accept: str) -> None:
    """What only documents act on: the referrer policy, legacy framing refusal, a browsing context of their own."""
    headers = client.get(path, headers={"Accept": accept}).headers
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_the_page_has_a_strict_content_security_policy(client: httpx.Client, app_env: dict[str, str]) -> None:
    """The page may run only its own scripts and talk only to itself and the S3 endpoint."""
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert f"connect-src 'self' {app_env['SOUNDPOST_S3_ENDPOINT']};" in csp


def test_hsts_is_sent_when_served_over_https(app_env: dict[str, str]) -> None:
    """Behind a TLS-terminating proxy (https public URL) every response asks for HTTPS only."""
    from service.app import create_app
    from tests.support.servers import serve_asgi

    app = lambda url: create_app({**app_env, "SOUNDPOST_PUBLIC_URL": "https://soundpost.example"})  # noqa: E731
    with serve_asgi(app) as url:
        headers = httpx.get(f"{url}/healthz").headers
    assert headers["strict-transport-security"].startswith("max-age=")


def test_cookies_codes_and_tokens_never_reach_the_logs(
    app_env: dict[str, str], oidc_idp: FakeIdP, caplog: pytest.LogCaptureFixture
) -> None:
    """With every log line on, a whole sign-in and presign leaves no secret in the service's logs."""
    caplog.set_level(logging.DEBUG)
    env = {**app_env, "SOUNDPOST_ACCESS_LOG": "true"}
    with serve_app(env) as url, httpx.Client(base_url=url) as c:
        login = start_login(c, "?provider=fake")
        callback = approve_at_idp(login.headers["location"])
        assert follow_callback(c, callback).status_code == 303
        assert c.post(PRESIGN, json=BODY).status_code == 200
        assert c.get("/nope").status_code == 404
        cookie = c.cookies["soundpost_session"]
    query = dict(httpx.URL(callback).params)
    secrets = {
        "session cookie": cookie,
        "cookie signature": cookie.rsplit(".", 1)[1],
        "authorization code": query["code"],
        "state": query["state"],
        "client secret": CLIENT_SECRET,
        "session secret": env["SOUNDPOST_SESSION_SECRET"],
        "S3 secret key": env["SOUNDPOST_S3_SECRET_ACCESS_KEY"],
        **{f"access token {i}": token for i, token in enumerate(oidc_idp.tokens)},
    }
    # The test's own HTTP clients log from this thread; the servers log from theirs.
    service_records = [r for r in caplog.records if r.thread != threading.get_ident()]
    assert any(r.name == "soundpost.access" for r in service_records)  # the logs were on
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in service_records)
    for what, value in secrets.items():
        assert value not in text, f"the {what} was logged"


def read_body(headers: list[tuple[bytes, bytes]], body: bytes = b"{}") -> bytes | int:
    """read_json_body on a raw ASGI request: the body, or the error status it raises."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": PRESIGN, "headers": headers}
    try:
        return asyncio.run(read_json_body(Request(scope, receive)))  # type: ignore[arg-type]
    except ApiError as exc:
        return exc.status


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"Application/JSON; charset=utf-8", b" application/json "]
)
def test_json_is_recognised_whatever_its_case_and_parameters(content_type: bytes) -> None:
    assert read_body([(b"content-type", content_type)]) == b"{}"


def test_the_first_content_type_counts() -> None:
    assert read_body([(b"content-type", b"text/plain"), (b"content-type", b"application/json")]) == 415


def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(MAX_JSON_BODY + 1).encode())]
    assert read_body(headers) == 413


def test_a_length_in_other_digits_is_not_taken_for_a_number() -> None:
    """Latin-1 superscript digits pass str.isdigit but not int(): they are not a length, so none is declared."""
    assert (
        read_body(
            [(b"content-type", b"application/json"), (b"content-length", "\u00b9\u00b2".encode("latin-1"))]
        )
        == b"{}"
    )


def test_a_declared_length_of_thousands_of_digits_is_413_not_a_500() -> None:
    """int() refuses more than 4,300 digits; so long a length is over any limit without converting it."""
    assert read_body([(b"content-type", b"application/json"), (b"content-length", b"9" * 5000)]) == 413
