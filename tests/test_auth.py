"""Sign-in: authorization code with state, nonce and PKCE; a signed cookie that holds identity only."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import itsdangerous
import pytest

from service import devstack
from service.core import keys
from tests.conftest import serve_app
from tests.support.fake_idp import FakeIdP
from tests.support.flows import approve_at_dev_idp, approve_at_idp, follow_callback, sign_in, start_login


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
        "emailVerified": True,
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
    user = payload["user"]
    assert isinstance(user, dict) and set(user) == {"p", "s", "i", "t", "e", "v", "n"}
    assert (user["p"], user["s"], user["e"], user["v"], user["n"]) == (
        "fake",
        "alice",
        "alice@example.com",
        True,
        "Alice Example",
    )
    assert len(user["i"]) >= 16 and abs(user["t"] / 1000 - time.time()) < 60  # session id, sign-in time
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


def dev_provider_env(app_env: dict[str, str], issuer: str) -> dict[str, str]:
    return {
        **app_env,
        "SOUNDPOST_PROVIDERS": "dev",
        "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": f"{issuer}/.well-known/openid-configuration",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost-dev",
        "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "soundpost-dev-secret",
    }


def sign_in_at_dev_idp(client: httpx.Client, subject: str) -> httpx.Response:
    login = start_login(client)
    assert login.status_code == 302, login.text
    return follow_callback(client, approve_at_dev_idp(login.headers["location"], subject))


def test_a_discovery_document_without_jwks_uri_is_a_502_not_a_500(
    app_env: dict[str, str], oidc_idp: FakeIdP
) -> None:
    """A provider whose discovery lost its jwks_uri mid-flow, or had none, answers 502 at once."""
    with serve_app({**app_env, "SOUNDPOST_IDP_METADATA_TTL": "0"}) as url, httpx.Client(base_url=url) as c:
        login = start_login(c, "?provider=fake")
        callback = approve_at_idp(login.headers["location"])
        oidc_idp.knobs.omit_jwks_uri = True
        answer = follow_callback(c, callback)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "identity_provider_error"
        fresh = start_login(c, "?provider=fake")
        assert fresh.status_code == 502 and fresh.json()["error"]["code"] == "identity_provider_error"
        assert c.get("/api/me").status_code == 401


@pytest.mark.parametrize("claim", [False, None], ids=["email_verified-false", "email_verified-absent"])
def test_an_unverified_email_is_never_presented_as_the_users(
    client: httpx.Client, oidc_idp: FakeIdP, claim: bool | None
) -> None:
    """The user signs in, but /api/me shows no address and says it is not verified; the cookie holds none."""
    oidc_idp.knobs.email_verified = claim
    assert sign_in(client, "fake", "alice").status_code == 303
    me = client.get("/api/me").json()
    assert (me["subject"], me["email"], me["emailVerified"]) == ("alice", None, False)
    assert "alice@example.com" not in json.dumps(cookie_payload(session_cookie(client)))


def test_an_email_from_userinfo_counts_only_for_the_same_subject(
    client: httpx.Client, oidc_idp: FakeIdP
) -> None:
    """OIDC Core 5.3.2: userinfo for another subject than the ID token's refuses the sign-in."""
    oidc_idp.knobs.omit_email_in_id_token = True
    assert sign_in(client, "fake", "alice").status_code == 303
    assert client.get("/api/me").json()["email"] == "alice@example.com"  # completed from userinfo
    oidc_idp.knobs.userinfo_subject = "mallory"
    with httpx.Client(base_url=str(client.base_url)) as other:
        answer = sign_in(other, "fake", "bob")
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "identity_provider_error"
        assert other.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    ("advertised", "iss", "status"),
    [
        (False, None, 303),
        (False, "", 303),
        (False, "https://evil.example", 400),
        (True, None, 400),
        (True, "", 303),
        (True, "https://evil.example", 400),
    ],
    ids=["absent", "right", "wrong", "advertised-but-absent", "advertised-right", "advertised-wrong"],
)
def test_the_authorization_responses_issuer_is_checked(
    client: httpx.Client, oidc_idp: FakeIdP, advertised: bool, iss: str | None, status: int
) -> None:
    """RFC 9207: an iss that is present, or advertised as always sent, must be the provider's issuer."""
    oidc_idp.knobs.advertise_iss = advertised  # before this test's app first reads the discovery document
    oidc_idp.knobs.response_iss = iss
    answer = sign_in(client, "fake", "alice")
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["error"]["code"] == "issuer_mismatch"
        assert client.get("/api/me").status_code == 401


def test_a_subject_is_never_truncated_into_another_user(app_env: dict[str, str]) -> None:
    """Through the dev provider, a 255-character subject is kept whole and a longer one is refused."""
    with devstack.dev_identity_provider() as issuer, serve_app(dev_provider_env(app_env, issuer)) as url:
        with httpx.Client(base_url=url) as c:
            assert sign_in_at_dev_idp(c, "a" * 255).status_code == 303
            assert c.get("/api/me").json()["subject"] == "a" * 255
        with httpx.Client(base_url=url) as c:
            refused = sign_in_at_dev_idp(c, "a" * 255 + "b")
            assert refused.status_code == 502
            assert refused.json()["error"]["code"] == "identity_provider_error"
            assert c.get("/api/me").status_code == 401


def test_a_wrong_client_secret_is_the_operators_502_logged_at_error(
    app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The provider refuses our client: the user sees 502, the log names the provider and the settings."""
    env = {**app_env, "SOUNDPOST_PROVIDER_FAKE_CLIENT_SECRET": "not-the-secret"}
    with serve_app(env) as url, httpx.Client(base_url=url) as c, caplog.at_level(logging.ERROR):
        answer = sign_in(c, "fake", "alice")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "identity_provider_error"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "fake" in m and "invalid_client" in m and "SOUNDPOST_PROVIDER_FAKE_CLIENT_SECRET" in m for m in errors
    ), errors


def test_a_sign_in_older_than_its_lifetime_is_refused(app_env: dict[str, str]) -> None:
    """SOUNDPOST_SIGN_IN_TIMEOUT bounds a sign-in's state, even while the cookie holding it is valid."""
    env = {**app_env, "SOUNDPOST_SIGN_IN_TIMEOUT": "30"}
    with serve_app(env) as url, httpx.Client(base_url=url) as c:
        login = start_login(c, "?provider=fake")
        callback = approve_at_idp(login.headers["location"])
        payload = cookie_payload(session_cookie(c))
        for key, entry in payload.items():
            if key.startswith("_state_fake_"):
                entry["data"]["started"] -= 31  # type: ignore[index]
        signer = itsdangerous.TimestampSigner(env["SOUNDPOST_SESSION_SECRET"])
        aged = signer.sign(base64.b64encode(json.dumps(payload).encode())).decode()
        c.cookies.set("soundpost_session", aged)
        answer = follow_callback(c, callback)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "sign_in_expired"
        assert c.get("/api/me").status_code == 401
