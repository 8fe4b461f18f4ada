"""Who is signed in: the session's user, read once per request, below the routes that ask.

Like Starlette's ``authentication.py``, this imports nothing from routing: the rate
limiter and every route ask it, and it never asks them.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from service.core import keys
from service.errors import ApiError
from service.identity.session_identity import from_session
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
    if identity is None:
        return None
    provider, subject, issued_ms = identity.provider, identity.subject, identity.signed_in_ms
    state = resources(request)
    # The cookie's signature may be newer than the sign-in (a later login re-signs it): the sign-in counts.
    if time.time() * 1000 - issued_ms > state["settings"].session_max_age * 1000:
        return None
    user_id = keys.user_id(provider, subject)
    if state["revocations"].refuses(identity.session_id, user_id, issued_ms):
        return None
    verified = identity.email_verified
    return User(
        provider=provider,
        subject=subject,
        user_id=user_id,
        email=identity.email if verified else None,
        email_verified=verified,
        name=identity.name,
    )


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise ApiError(401, "not_signed_in", "Sign in first.")
    return user
