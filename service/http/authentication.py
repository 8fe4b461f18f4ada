"""Who is signed in: the session's user, read once per request, below the routes that ask.

Like Starlette's ``authentication.py``, this imports nothing from routing: the rate
limiter and every route ask it, and it never asks them.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from service.core import keys
from service.errors import ApiError
from service.resources import resources
from service.schemas import User

SESSION_USER = "user"
_USER_READ = "soundpost.user"  # scope key: (session entry, user) from this request's first read


def current_user(request: Request) -> User | None:
    """The signed-in user, read once per request (the rate limiter and the route both ask)."""
    data = request.session.get(SESSION_USER)
    known: tuple[object, User | None] | None = request.scope.get(_USER_READ)
    if known is not None and known[0] is data:  # the same session entry as last time: the same user
        return known[1]
    user = _user_from(request, data)
    request.scope[_USER_READ] = (data, user)
    return user


def _user_from(request: Request, data: object) -> User | None:
    """The session's user, unless the entry is malformed, too old or signed out."""
    user = session_user(request, data)
    if user is None or not isinstance(data, dict):
        return None
    session_id, issued_ms = data["i"], data["t"]
    revocations = resources(request)["revocations"]
    if revocations.refuses(session_id, user.user_id, issued_ms):
        return None
    if revocations.undecided(issued_ms):  # not read yet, or Redis just lost its data: never accept blindly
        raise ApiError(
            503,
            "revocations_unavailable",
            "This server cannot yet tell whether your session was signed out. Try again in a moment.",
            headers={"Retry-After": "5"},
        )
    return user


def session_user(request: Request, data: object) -> User | None:
    """The user a session entry names, if well formed and young enough, whether or not it was signed out."""
    if not isinstance(data, dict):
        return None
    try:
        provider, subject = str(data["p"]), str(data["s"])
        session_id, issued_ms = data["i"], data["t"]
    except KeyError:
        return None  # no session id: from before sessions could be revoked, so not accepted
    if not isinstance(session_id, str) or not isinstance(issued_ms, int):
        return None
    # The cookie's signature may be newer than the sign-in (a later login re-signs it): the sign-in counts.
    if time.time() * 1000 - issued_ms > resources(request)["settings"].session_max_age * 1000:
        return None
    verified = data.get("v") is True
    return User(
        provider=provider,
        subject=subject,
        user_id=keys.user_id(provider, subject),
        email=data.get("e") if verified else None,
        email_verified=verified,
        name=data.get("n"),
    )


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise ApiError(401, "not_signed_in", "Sign in first.")
    return user
