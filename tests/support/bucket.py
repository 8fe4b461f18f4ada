"""``soundpost bucket setup`` (and ``check``) run the way an operator runs it: a process of its own, settings from its environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_bucket_setup(settings: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """Run the command with exactly these SOUNDPOST_* settings (none inherited from the test process)."""
    return run_bucket_command("setup", settings, *options)


def run_bucket_command(
    step: str, settings: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    """``soundpost bucket <step>`` with exactly these SOUNDPOST_* settings."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("SOUNDPOST_")}
    return subprocess.run(
        [sys.executable, "-m", "service", "bucket", step, *options],
        env={**inherited, **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
