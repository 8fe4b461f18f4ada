"""A value that must never show in a repr, a traceback or a log line: a secret key, a password-bearing URL.

Starlette's ``Secret`` does the same, but the storage and core layers import no web framework.
"""

from __future__ import annotations


class Secret:
    """Holds a string; ``str()`` reveals it on purpose, ``repr()`` never does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    def __str__(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
