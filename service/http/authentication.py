"""Who is signed in: the session's user, read once per request, below the routes that ask.

Like Starlette's ``authentication.py``, this imports nothing from routing: the rate
limiter and every route ask it, and it never asks them.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from service.core import keys
from service.errors import ApiError
from service.identity.session_identity import SessionIdentity, from_session
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
    identity = from_session(data)
    user = session_user(request, identity)
    if user is None or identity is None:
        return None
    revocations = resources(request)["revocations"]
    if revocations.refuses(identity.session_id, user.user_id, identity.signed_in_ms):
        return None
    if revocations.undecided(identity.signed_in_ms):  # not read yet, or Redis just lost its data
        raise ApiError(
            503,
            "revocations_unavailable",
            "This server cannot yet tell whether your session was signed out. Try again in a moment.",
            headers={"Retry-After": "5"},
        )
    return user


def session_user(request: Request, identity: SessionIdentity | None) -> User | None:
    """The user a session names, if young enough, whether or not it was signed out."""
    if identity is None:
        return None
    # The cookie's signature may be newer than the sign-in (a later login re-signs it): the sign-in counts.
    if time.time() * 1000 - identity.signed_in_ms > resources(request)["settings"].session_max_age * 1000:
        return None
    verified = identity.email_verified
    return User(
        provider=identity.provider,
        subject=identity.subject,
        user_id=keys.user_id(identity.provider, identity.subject),
        email=identity.email if verified else None,
        email_verified=verified,
        name=identity.name,
    )


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise ApiError(401, "not_signed_in", "Sign in first.")
    return user
