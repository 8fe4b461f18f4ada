"""The session's identity: a Struct with one-letter keys, so old cookies sign in and none grew."""

from __future__ import annotations

import json
import secrets
import time
from base64 import b64decode, b64encode
from typing import Any

import httpx
import itsdangerous
import pytest

from service.identity.session_identity import SessionIdentity, from_session, to_session
from tests.support.flows import sign_in


def written_before(identity: SessionIdentity) -> dict[str, Any]:
    """The dict the sign-in route wrote before the Struct existed, key for key and in its order."""
    old: dict[str, Any] = {
        "p": identity.provider,
        "s": identity.subject,
        "i": identity.session_id,
        "t": identity.signed_in_ms,
    }
    if identity.email_verified:
        old["e"], old["v"] = identity.email, True
    else:
        old["v"] = False
    if identity.name:
        old["n"] = identity.name
    return old


def identity(*, verified: bool, name: str | None = "Alice Example") -> SessionIdentity:
    return SessionIdentity(
        provider="fake",
        subject="alice",
        session_id=secrets.token_urlsafe(12),
        signed_in_ms=int(time.time() * 1000),
        email="alice@example.com" if verified else None,
        email_verified=verified,
        name=name,
    )


def test_a_verified_identity_is_stored_exactly_as_before() -> None:
    """Same keys, same order, same JSON: a verified sign-in's cookie is byte for byte the old one."""
    signed_in = identity(verified=True)
    assert json.dumps(to_session(signed_in)) == json.dumps(written_before(signed_in))


@pytest.mark.parametrize("name", ["Alice Example", None])
def test_an_unverified_identity_is_stored_no_larger_than_before(name: str | None) -> None:
    """Without a verified email the Struct leaves out "v": false, so the cookie is shorter, never longer."""
    signed_in = identity(verified=False, name=name)
    new, old = json.dumps(to_session(signed_in)), json.dumps(written_before(signed_in))
    assert len(new) < len(old)
    assert from_session(json.loads(old)) == from_session(json.loads(new)) == signed_in


@pytest.mark.parametrize(
    "entry",
    [
        {"p": "fake", "s": "alice", "t": 1},  # from before sessions had ids: sign in again
        {"p": "fake", "s": "alice", "i": "x", "t": "1"},
        {"p": "fake", "s": "alice", "i": 7, "t": 1},
        {"p": "fake", "i": "x", "t": 1},
        "alice",
        None,
    ],
)
def test_a_malformed_session_entry_holds_no_identity(entry: object) -> None:
    assert from_session(entry) is None


def test_unknown_keys_in_an_entry_are_ignored() -> None:
    """A key a later version adds does not sign an older replica's users out."""
    entry = {**written_before(identity(verified=True)), "x": 1}
    assert from_session(entry) is not None


def test_a_cookie_written_in_the_old_format_still_signs_in(app_url: str, app_env: dict[str, str]) -> None:
    """A session cookie signed by the previous code (a plain dict) is read as the same user."""
    signer = itsdangerous.TimestampSigner(app_env["SOUNDPOST_SESSION_SECRET"])
    old = written_before(identity(verified=True))
    value = signer.sign(b64encode(json.dumps({"user": old}).encode())).decode()
    with httpx.Client(base_url=app_url, cookies={"soundpost_session": value}) as browser:
        me = browser.get("/api/me")
    assert me.status_code == 200, me.text
    assert (me.json()["email"], me.json()["name"], me.json()["emailVerified"]) == (
        "alice@example.com",
        "Alice Example",
        True,
    )


def test_a_sign_in_cookie_is_no_larger_than_the_old_format(client: httpx.Client) -> None:
    """The cookie a real sign-in sets holds what the old code held, in no more bytes."""
    assert sign_in(client, "fake", "alice").status_code == 303
    payload = client.cookies["soundpost_session"].split(".")[0]
    stored = json.loads(b64decode(payload))["user"]
    signed_in = from_session(stored)
    assert signed_in is not None and signed_in.subject == "alice"
    assert len(json.dumps(stored)) <= len(json.dumps(written_before(signed_in)))
