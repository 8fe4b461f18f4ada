"""System packages some tests need (Ceph, Chromium, Redis, npm)."""

from __future__ import annotations

import os

import pytest


def require_tool(found: bool, what: str, install: str) -> None:
    """Skip on a laptop without a system package; in CI a missing package is a failure."""
    if found:
        return
    message = f"{what} is not installed: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run every test)", pytrace=False)
    pytest.skip(message)
