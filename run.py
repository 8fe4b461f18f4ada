#!/usr/bin/env python3
"""Two commands on a fresh machine with only Python 3.11+:

    python3 run.py dev     # the app with an embedded S3 stand-in and identity provider
    python3 run.py test    # the whole test suite (--fast: the unit tests only, in seconds)
    python3 run.py lint    # ruff check, ruff format --check, mypy and the import contracts, as CI runs them

Each makes (or refreshes) a virtual environment in .venv with the locked versions in
requirements/ (app.txt, dev.txt, test.txt), then runs the command inside it. Extra arguments are passed on
(``python3 run.py test -k presign``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SOUNDPOST_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_environment(extras: str) -> None:
    """Install the locked dependencies into .venv once, and again whenever the lock changes."""
    lock = ROOT / "requirements" / f"{extras or 'app'}.txt"
    stamp = VENV / f".installed-{extras or 'app'}"
    wanted = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"installing dependencies from {lock.relative_to(ROOT)} (first run only)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # Exactly the locked versions, each checked against its hash; then the project itself,
    # built with the locked setuptools and adding nothing.
    subprocess.run([*pip, "--require-hashes", "--no-deps", "-r", str(lock)], check=True)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    stamp.write_text(wanted)


def lint() -> int:
    """Every check CI runs before the tests; all run, and any failure fails the whole."""
    checks = (
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
        ["lint-imports"],  # the layer contracts in pyproject.toml
    )
    failed = [check[0] for check in checks if subprocess.call([str(BIN / check[0]), *check[1:]], cwd=ROOT)]
    if failed:
        print(f"lint failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("dev", "test", "lint", "serve", "bench"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_environment("test")
        # Two workers, each taking whole modules (module fixtures and in-module order stay as
        # written); "-n 0" among the arguments runs in one process.
        workers = ["-n", "2", "--dist", "loadfile"]
        if "--fast" in rest:
            # The unit tests only: no servers, no browser; one process is quicker than starting workers.
            rest = [arg for arg in rest if arg != "--fast"]
            workers = ["-n", "0", "-m", "not peers"]
        return subprocess.call([str(PYTHON), "-m", "pytest", *workers, *rest], cwd=ROOT)
    if command == "lint":
        ensure_environment("test")
        return lint()
    if command == "bench":
        ensure_environment("test")
        return subprocess.call([str(PYTHON), str(ROOT / "bench" / "run.py"), *rest], cwd=ROOT)
    ensure_environment("dev" if command == "dev" else "")
    return subprocess.call([str(PYTHON), "-m", "service", command, *rest], cwd=ROOT)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
