#!/usr/bin/env python3
"""Two commands on a fresh machine with only Python 3.11+:

    python3 run.py dev     # the app with an embedded S3 stand-in and identity provider
    python3 run.py test    # the whole test suite

Each makes (or refreshes) a virtual environment in .venv with what pyproject.toml
asks for, then runs the command inside it. Extra arguments are passed on
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
    """Install the project into .venv once, and again whenever pyproject.toml changes."""
    stamp = VENV / f".installed-{extras or 'base'}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print("installing dependencies (first run only)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", target], check=True)
    stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        sys.exit("Soundpost needs Python 3.11 or newer")
    if not argv or argv[0] not in ("dev", "test", "serve", "bench"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_environment("test")
        return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)
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
