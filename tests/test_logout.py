"""Sign-out that signs out: revoked sessions, sign-out everywhere, replicas that agree, and the provider's logout."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import itsdangerous

from service.identity.revocation import Revocations, SharedRevocations
from tests.conftest import serve_app
from tests.support.flows import approve_at_dev_idp, follow_callback, sign_in, start_login
from tests.support.servers import bound_socket


@contextlib.contextmanager
def signed_in(url: str, user: str = "alice") -> Iterator[httpx.Client]:
    """A browser with a session of its own (each sign-in is a new session)."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        assert sign_in(client, "fake", user).status_code == 303
        yield client


@contextlib.contextmanager
def with_cookie(url: str, value: str) -> Iterator[httpx.Client]:
    """Another browser (or an attacker) holding a copy of a session cookie."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        client.cookies.set("soundpost_session", value)
        yield client


def test_a_copy_of_the_cookie_taken_before_sign_out_no_longer_works(
    alice: httpx.Client, app_url: str
) -> None:
    """Sign-out revokes the session itself, not only this browser's cookie."""
    copy = alice.cookies["soundpost_session"]
    with with_cookie(app_url, copy) as thief:
        assert thief.get("/api/me").status_code == 200
        assert alice.post("/auth/logout").status_code == 204
        assert thief.get("/api/me").status_code == 401
        presign = thief.post(
            "/api/upload/presigned-url", json={"filename": "a.wav", "contentType": "audio/wav"}
        )
        assert presign.status_code == 401


def test_a_copy_of_a_signed_out_cookie_cannot_sign_the_user_out_everywhere(
    alice: httpx.Client, app_url: str
) -> None:
    """Sign-out with a session refused already only sends what waits for Redis: it revokes nothing new."""
    copy = alice.cookies["soundpost_session"]
    assert alice.post("/auth/logout").status_code == 204
    with signed_in(app_url) as later, with_cookie(app_url, copy) as thief:
        assert thief.post("/auth/logout?everywhere=true").status_code == 204
        assert later.get("/api/me").json()["subject"] == "alice"


def test_signing_out_one_session_leaves_the_others(app_url: str) -> None:
    """Two sign-ins of the same user are two sessions; ending one keeps the other."""
    with signed_in(app_url) as laptop, signed_in(app_url) as phone:
        assert laptop.post("/auth/logout").status_code == 204
        assert phone.get("/api/me").json()["subject"] == "alice"


def test_sign_out_everywhere_ends_every_earlier_session_of_the_user_only(app_url: str) -> None:
    """everywhere=true revokes all of alice's sessions from before it; bob's and later ones stand."""
    with signed_in(app_url) as laptop, signed_in(app_url) as phone, signed_in(app_url, "bob") as bob:
        assert laptop.post("/auth/logout?everywhere=true").status_code == 204
        assert laptop.get("/api/me").status_code == 401
        assert phone.get("/api/me").status_code == 401
        assert bob.get("/api/me").json()["subject"] == "bob"
        with signed_in(app_url) as later:
            assert later.get("/api/me").json()["subject"] == "alice"


def test_sign_out_everywhere_refuses_a_value_that_is_not_a_boolean(alice: httpx.Client) -> None:
    """A typo is a 422, not a silent sign-out of one session."""
    answer = alice.post("/auth/logout?everywhere=maybe")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    assert alice.get("/api/me").status_code == 200


def test_a_cookie_without_a_session_id_is_not_a_session(alice: httpx.Client, app_env: dict[str, str]) -> None:
    """A validly signed identity without id and sign-in time (as issued before revocation existed) is refused."""
    signer = itsdangerous.TimestampSigner(app_env["SOUNDPOST_SESSION_SECRET"])
    old = {"user": {"p": "fake", "s": "alice", "e": "alice@example.com", "n": "Alice Example"}}
    alice.cookies.set("soundpost_session", signer.sign(base64.b64encode(json.dumps(old).encode())).decode())
    assert alice.get("/api/me").status_code == 401


def test_replicas_sharing_redis_refuse_a_cookie_revoked_on_the_other(
    app_env: dict[str, str], redis_url: str
) -> None:
    """With SOUNDPOST_REDIS_URL, a sign-out on one app instance is honoured by another within about a second."""
    env = {**app_env, "SOUNDPOST_REDIS_URL": redis_url}
    with serve_app(env) as one, serve_app(env) as two, signed_in(one) as on_one, signed_in(one) as other:
        revoked = on_one.cookies["soundpost_session"]
        with with_cookie(two, revoked) as on_two:
            assert on_two.get("/api/me").status_code == 200
            assert on_one.post("/auth/logout").status_code == 204
            assert refused_within(on_two, 3.0)
        with with_cookie(two, other.cookies["soundpost_session"]) as other_on_two:
            assert other_on_two.get("/api/me").status_code == 200  # alice's other session stands
            assert other_on_two.post("/auth/logout?everywhere=true").status_code == 204
            assert refused_within(other, 3.0)  # ... until she signs out everywhere on the other replica
        with serve_app(env) as three, with_cookie(three, revoked) as late:
            assert refused_within(late, 3.0)  # a replica started later reads the revocations so far


def refused_within(client: httpx.Client, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while client.get("/api/me").status_code == 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sign_out_at_the_provider_when_configured(app_env: dict[str, str]) -> None:
    """SOUNDPOST_PROVIDER_<NAME>_END_SESSION sends the browser to the dev provider's end_session_endpoint."""
    from service import devstack

    with devstack.dev_identity_provider() as issuer:
        env = {
            **app_env,
            "SOUNDPOST_PROVIDERS": "dev",
            "SOUNDPOST_PROVIDER_DEV_DISCOVERY_URL": f"{issuer}/.well-known/openid-configuration",
            "SOUNDPOST_PROVIDER_DEV_CLIENT_ID": "soundpost-dev",
            "SOUNDPOST_PROVIDER_DEV_CLIENT_SECRET": "soundpost-dev-secret",
        }
        for end_session in ("true", "false"):
            settings = {**env, "SOUNDPOST_PROVIDER_DEV_END_SESSION": end_session}
            with serve_app(settings) as url, httpx.Client(base_url=url) as c:
                login = start_login(c)
                assert follow_callback(c, approve_at_dev_idp(login.headers["location"])).status_code == 303
                out = c.post("/auth/logout", headers={"Accept": "text/html"})
                assert out.status_code == 303 and c.get("/api/me").status_code == 401
                if end_session == "false":
                    assert out.headers["location"] == "/"
                    continue
                target = urlsplit(out.headers["location"])
                assert f"{target.scheme}://{target.netloc}" == issuer
                query = parse_qs(target.query)
                assert query["client_id"] == ["soundpost-dev"]
                assert query["post_logout_redirect_uri"] == [f"{url}/"]
                page = httpx.get(out.headers["location"])
                assert page.status_code == 200  # the provider's own sign-out confirmation


def test_revocations_stay_bounded_and_forget_what_has_expired() -> None:
    """Past MAX_SESSIONS ids a sign-out revokes the user's earlier sessions instead; expired entries go."""
    now = [1_000_000.0]
    table = Revocations(lifetime=3600, clock=lambda: now[0])
    table.MAX_SESSIONS = 2
    issued = int(now[0] * 1000) - 1
    for sid in ("s1", "s2", "s3"):
        table.apply_session(sid, "u1", issued)
    assert set(table.sessions) == {"s1", "s2"} and "u1" in table.users
    assert table.refuses("s3", "u1", issued) and not table.refuses("s4", "u1", issued + 10)
    now[0] += 3600 + Revocations.SWEEP_EVERY + 1
    table.sweep()
    assert table.sessions == {} and table.users == {}


def test_a_new_epoch_puts_older_sessions_in_doubt_only_for_the_grace_period() -> None:
    """After Redis lost its data, sessions signed in before its new epoch are undecided (503), later ones are not."""
    now = [1_000_000.0]
    table = Revocations(lifetime=3600, clock=lambda: now[0])
    made_ms = table.now_ms()
    table.doubt_before_ms, table.doubt_until_ms = made_ms, made_ms + 5000
    assert table.undecided(made_ms - 1) and not table.undecided(made_ms)
    now[0] += 5
    assert not table.undecided(made_ms - 1)
    table.caught_up = False
    assert table.undecided(made_ms)


def test_what_a_replica_holds_is_published_as_entries_another_replica_applies_alike() -> None:
    """held() gives back, as stream entries, every live revocation; applying them rebuilds the table."""
    now = [1_000_000.0]
    one = SharedRevocations("redis://127.0.0.1:1/0", lifetime=3600, clock=lambda: now[0])
    issued = one.now_ms() - 1000
    one.apply_session("s1", "u1", issued)
    one.apply_session("old", "u1", issued - 3_600_000)  # its cookie has expired: not published again
    one.apply_user("u2", issued)
    two = SharedRevocations("redis://127.0.0.1:1/0", lifetime=3600, clock=lambda: now[0])
    for entry in one.held():
        two.apply_entry(entry)
    assert two.refuses("s1", "u1", issued) and two.refuses("any", "u2", issued - 1)
    assert not two.refuses("old", "u1", issued) and not two.refuses("s2", "u1", issued)


def test_with_redis_down_sign_out_still_ends_the_session_here_and_says_so(app_env: dict[str, str]) -> None:
    """The replica refuses the session at once; the 503 says other replicas could not be told; readiness agrees."""
    dead = bound_socket()
    port = dead.getsockname()[1]
    dead.close()
    env = {**app_env, "SOUNDPOST_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with serve_app(env) as url, signed_in(url) as alice:
        with with_cookie(url, alice.cookies["soundpost_session"]) as copy:
            answer = alice.post("/auth/logout")
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "revocation_unavailable"
            assert "set-cookie" not in answer.headers  # kept, so the user can sign out again
            assert copy.get("/api/me").status_code == 401
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["revocations"].startswith("unreachable (Redis")
