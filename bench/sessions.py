"""Signed-in session cookies made without signing in, so a benchmark can speak for thousands of users."""

from __future__ import annotations

import base64
import json
import secrets
import time

import itsdangerous


def session_cookie(secret: str, subject: str, name: str = "soundpost_session") -> str:
    """A cookie signed as Starlette's SessionMiddleware signs it, holding what sign-in stores.

    The keys are those of ``service.identity.session_identity.SessionIdentity``: the
    provider, the subject, a session id and the sign-in time (which the app requires).
    """
    user = {
        "p": "dev",
        "s": subject,
        "i": secrets.token_urlsafe(12),
        "t": int(time.time() * 1000),
        "e": f"{subject}@example.com",
        "v": True,
    }
    data = base64.b64encode(json.dumps({"user": user}).encode())
    return f"{name}={itsdangerous.TimestampSigner(secret).sign(data).decode()}"
