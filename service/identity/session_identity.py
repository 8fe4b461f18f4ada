"""Who signed in, as the session cookie holds it: one Struct, one-letter names on the wire.

The cookie is signed, not encrypted, and travels with every request, so each field
is renamed to one letter (``p``, ``s``, ``i``, ``t``, ``e``, ``v``, ``n``): the
same keys, in the same order, that sessions were written with before this Struct
existed, so cookies from then still sign in and no cookie grew.
"""

from __future__ import annotations

from typing import Any

import msgspec


class SessionIdentity(msgspec.Struct, omit_defaults=True):
    """The session's record of a sign-in: identity and the sign-in's id and time, never tokens."""

    provider: str = msgspec.field(name="p")
    subject: str = msgspec.field(name="s")
    session_id: str = msgspec.field(name="i")  # what sign-out revokes
    signed_in_ms: int = msgspec.field(name="t")  # "sign out everywhere" revokes what came before
    email: str | None = msgspec.field(default=None, name="e")  # kept only when verified
    email_verified: bool = msgspec.field(default=False, name="v")
    name: str | None = msgspec.field(default=None, name="n")


def to_session(identity: SessionIdentity) -> dict[str, Any]:
    """The JSON-ready mapping the session cookie stores."""
    stored: dict[str, Any] = msgspec.to_builtins(identity)
    return stored


def from_session(data: object) -> SessionIdentity | None:
    """The identity a session entry holds, or None when the entry is missing or malformed."""
    if not isinstance(data, dict):
        return None
    try:
        return msgspec.convert(data, SessionIdentity)
    except msgspec.ValidationError:
        return None  # e.g. no session id: from before sessions could be revoked, so not accepted
