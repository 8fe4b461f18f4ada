"""The session cookie is sent when the session changes, not on every response.

Starlette's SessionMiddleware (1.x) re-signs and re-sends the cookie only when a
request modifies the session. Soundpost's requests after sign-in only read it, so
they carry no Set-Cookie: no signing cost per request, and a sign-in lasts
SOUNDPOST_SESSION_MAX_AGE from the moment it happened (a fixed lifetime, not a
sliding one), as the settings table says.
"""

from __future__ import annotations

import httpx

from tests.support.flows import sign_in


def test_sign_in_sets_the_cookie_with_its_lifetime(client: httpx.Client) -> None:
    """The callback that completes sign-in is where the cookie and its Max-Age are set."""
    final = sign_in(client, "fake", "alice")
    assert final.status_code == 303
    assert "soundpost_session=" in final.headers["set-cookie"]
    assert "max-age=43200" in final.headers["set-cookie"].lower()


def test_a_signed_in_presign_does_not_resend_the_cookie(alice: httpx.Client) -> None:
    """Presigning reads the session only: the response carries no Set-Cookie."""
    answer = alice.post("/api/upload/presigned-url", json={"filename": "a.wav", "contentType": "audio/wav"})
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers


def test_reading_who_is_signed_in_does_not_resend_the_cookie(alice: httpx.Client) -> None:
    """GET /api/me answers from the cookie without re-signing it."""
    answer = alice.get("/api/me")
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers


def test_sign_out_still_clears_the_cookie(alice: httpx.Client) -> None:
    """A change to the session (here: clearing it) is still sent."""
    answer = alice.post("/auth/logout")
    assert answer.status_code == 204
    assert "soundpost_session=null" in answer.headers["set-cookie"]
