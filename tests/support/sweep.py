"""Running ``soundpost sweep`` the way cron does: a separate process with SOUNDPOST_* in its environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_sweep(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One pass of the real command; the caller checks its exit status and what it did."""
    return subprocess.run(
        [sys.executable, "-m", "service", "sweep"],
        env={**os.environ, "SOUNDPOST_PUBLIC_URL": "http://127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sweep_twice(env: dict[str, str]) -> tuple[str, str]:
    """Two passes of the real command, one after the other, both succeeding: each pass's report."""
    first = run_sweep(env)
    assert first.returncode == 0, first.stderr
    second = run_sweep(env)
    assert second.returncode == 0, second.stderr
    return first.stdout, second.stdout
