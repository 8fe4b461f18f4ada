"""Sign-in: authorization code with state, nonce and PKCE; a signed cookie that holds identity only."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import itsdangerous
import pytest

from service import keys
from tests.support.fake_idp import FakeIdP
from tests.support.flows import approve_at_idp, follow_callback, sign_in, start_login


def session_cookie(client: httpx.Client) -> str:
    return client.cookies["soundpost_session"]


def cookie_payload(value: str) -> dict[str, object]:
    """What the signed (not encrypted) cookie carries: anyone holding it can read this."""
    data = value.split(".")[0]
    return json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))


def test_me_without_a_session_is_401_json(client: httpx.Client) -> None:
    answer = client.get("/api/me")
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "not_signed_in", "detail": "Sign in first."}}


def test_oidc_sign_in_lands_on_next_and_me_reports_the_user(client: httpx.Client) -> None:
    final = sign_in(client, "fake", "alice", next_path="/library?tab=recent")
    assert final.status_code == 303
    assert final.headers["location"] == "/library?tab=recent"
    me = client.get("/api/me").json()
    assert me == {
        "provider": "fake",
        "subject": "alice",
        "userId": keys.user_id("fake", "alice"),
        "email": "alice@example.com",
        "name": "Alice Example",
    }


def test_sign_in_sends_pkce_s256_and_a_nonce_and_the_provider_checks_them(
    client: httpx.Client, oidc_idp: FakeIdP
) -> None:
    sign_in(client, "fake", "alice")
    asked = oidc_idp.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["nonce"]) >= 16 and len(asked["state"]) >= 16
    verifier = oidc_idp.token_requests[-1]["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == asked["code_challenge"]
    assert client.get("/api/me").status_code == 200


def test_github_style_provider_without_id_token_signs_in_by_numeric_id(
    client: httpx.Client, github_idp: FakeIdP
) -> None:
    assert sign_in(client, "hub", "bob").status_code == 303
    me = client.get("/api/me").json()
    assert (me["provider"], me["subject"], me["name"]) == ("hub", "1002", "Bob Example")
    assert github_idp.authorize_requests[-1]["code_challenge_method"] == "S256"
    assert "code_verifier" in github_idp.token_requests[-1]


def test_session_cookie_is_httponly_lax_and_holds_identity_only(client: httpx.Client) -> None:
    final = sign_in(client, "fake", "alice")
    header = final.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header
    assert "secure" not in header  # plain-http public URL: local development
    payload = cookie_payload(session_cookie(client))
    assert payload == {"user": {"p": "fake", "s": "alice", "e": "alice@example.com", "n": "Alice Example"}}
    assert len(final.headers["set-cookie"]) < 1024


def test_sign_in_issues_a_fresh_session(client: httpx.Client) -> None:
    login = start_login(client, "?provider=fake")
    before = cookie_payload(session_cookie(client))
    assert any(k.startswith("_state_fake_") for k in before)  # flow state rides in the cookie
    follow_callback(client, approve_at_idp(login.headers["location"]))
    after = cookie_payload(session_cookie(client))
    assert list(after) == ["user"]


def test_a_tampered_cookie_is_not_a_session(client: httpx.Client) -> None:
    sign_in(client, "fake", "alice")
    value = session_cookie(client)
    forged = base64.b64encode(json.dumps({"user": {"p": "fake", "s": "bob"}}).encode()).decode()
    client.cookies.set("soundpost_session", forged + "." + value.split(".", 1)[1])
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
        "/%0d%0aSet-Cookie:x",
    ],
)
def test_next_never_leaves_the_site(client: httpx.Client, next_path: str) -> None:
    final = sign_in(client, "fake", "alice", next_path=next_path)
    location = final.headers["location"]
    assert not urlsplit(location).netloc and not location.startswith("//")
    assert "\r" not in location and "\n" not in location


def test_login_without_provider_when_several_exist_is_400(client: httpx.Client) -> None:
    answer = client.get("/auth/login")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "provider_required"


def test_login_with_unknown_provider_is_404(client: httpx.Client) -> None:
    answer = client.get("/auth/login?provider=nope")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_provider"


def test_denied_consent_is_a_clear_403_page(client: httpx.Client) -> None:
    login = start_login(client, "?provider=fake")
    callback = approve_at_idp(login.headers["location"], action="deny")
    answer = follow_callback_html(client, callback)
    assert answer.status_code == 403
    assert "sign_in_denied" in answer.text and "Traceback" not in answer.text


def follow_callback_html(client: httpx.Client, callback_url: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}", headers={"Accept": "text/html"})


def test_replayed_callback_is_refused_as_stale_state(client: httpx.Client) -> None:
    login = start_login(client, "?provider=fake")
    callback = approve_at_idp(login.headers["location"])
    assert follow_callback(client, callback).status_code == 303
    replay = follow_callback(client, callback)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "invalid_state"


def test_callback_with_a_state_from_another_browser_is_refused(client: httpx.Client, app_url: str) -> None:
    login = start_login(client, "?provider=fake")
    callback = approve_at_idp(login.headers["location"])
    with httpx.Client(base_url=app_url) as attacker:
        answer = follow_callback(attacker, callback)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_state"


@pytest.mark.parametrize(
    ("knob", "value"),
    [("id_token_exp_offset", -600), ("id_token_iat_offset", 3600), ("nonce", "not-the-nonce-we-sent")],
    ids=["expired", "future-dated", "wrong-nonce"],
)
def test_bad_id_tokens_are_refused(client: httpx.Client, oidc_idp: FakeIdP, knob: str, value: object) -> None:
    setattr(oidc_idp.knobs, knob, value)
    answer = sign_in(client, "fake", "alice")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_id_token"
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "not json"), (200, '{"token_type": "Bearer"}'), (500, "{}"), (400, '{"error": "invalid_grant"}')],
    ids=["not-json", "no-access-token", "server-error", "oauth-error"],
)
def test_bad_token_responses_are_clear_errors_not_500(
    client: httpx.Client, oidc_idp: FakeIdP, status: int, body: str
) -> None:
    oidc_idp.knobs.token_status = status
    oidc_idp.knobs.token_body = body
    answer = sign_in(client, "fake", "alice")
    assert 400 <= answer.status_code < 500 or answer.status_code in (502, 503)
    assert answer.json()["error"]["code"] in {"sign_in_failed", "identity_provider_error", "invalid_id_token"}
    assert client.get("/api/me").status_code == 401


def test_oidc_provider_that_sends_no_id_token_is_refused(client: httpx.Client, oidc_idp: FakeIdP) -> None:
    oidc_idp.knobs.omit_id_token = True
    answer = sign_in(client, "fake", "alice")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "identity_provider_error"


def test_unreachable_provider_is_503_with_retry_after(app_env: dict[str, str]) -> None:
    from service.app import create_app
    from tests.support.servers import bound_socket, serve_asgi

    dead = bound_socket()  # a port that accepts nothing once closed
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_DISCOVERY_URL": f"{dead_url}/.well-known/openid-configuration"}
    with serve_asgi(lambda url: create_app({**env, "SOUNDPOST_PUBLIC_URL": url})) as url:
        answer = httpx.get(f"{url}/auth/login?provider=fake", headers={"Accept": "text/html"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert "identity_provider_unavailable" in answer.text


def test_logout_ends_the_session(alice: httpx.Client) -> None:
    assert alice.post("/auth/logout").status_code == 204
    assert alice.get("/api/me").status_code == 401


def test_cross_site_logout_is_refused(alice: httpx.Client) -> None:
    answer = alice.post(
        "/auth/logout", headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "cross_site_request"
    assert alice.get("/api/me").status_code == 200


def test_session_expires_after_its_lifetime(app_env: dict[str, str]) -> None:
    from service.app import create_app
    from tests.support.servers import serve_asgi

    env = {**app_env, "SOUNDPOST_SESSION_MAX_AGE": "60"}
    with (
        serve_asgi(lambda url: create_app({**env, "SOUNDPOST_PUBLIC_URL": url})) as url,
        httpx.Client(base_url=url) as c,
    ):
        sign_in(c, "fake", "alice")
        value = c.cookies["soundpost_session"]
        signer = itsdangerous.TimestampSigner(env["SOUNDPOST_SESSION_SECRET"])
        # re-sign the same payload as if it were issued two minutes ago
        payload = value.split(".")[0]
        old = signer.sign(payload.encode()).decode()
        real_time = time.time
        try:
            time.time = lambda: real_time() - 120  # type: ignore[assignment]
            old = signer.sign(payload.encode()).decode()
        finally:
            time.time = real_time  # type: ignore[assignment]
        c.cookies.set("soundpost_session", old)
        assert c.get("/api/me").status_code == 401


def test_full_sign_in_through_oidc_provider_mock(app_env: dict[str, str]) -> None:
    """The dev command's identity provider (a separate real implementation) works end to end."""
    from service import devstack
    from service.app import create_app
    from tests.support.servers import serve_asgi
    from tests.support.settings import dev_provider_settings

    with devstack.dev_identity_provider() as issuer:
        env = {
            **app_env,
            **dev_provider_settings(issuer),
        }
        with (
            serve_asgi(lambda url: create_app({**env, "SOUNDPOST_PUBLIC_URL": url})) as url,
            httpx.Client(base_url=url) as c,
        ):
            login = c.get("/auth/login", follow_redirects=False)
            authorize = login.headers["location"]
            query = parse_qs(urlsplit(authorize).query)
            assert query["code_challenge_method"] == ["S256"] and query["nonce"]
            form = httpx.get(authorize)
            assert form.status_code == 200 and "alice" in form.text
            to_callback = httpx.post(authorize, data={"sub": "alice"})
            assert to_callback.status_code == 302
            follow_callback(c, to_callback.headers["location"])
            assert c.get("/api/me").json()["email"] == "alice@example.com"
