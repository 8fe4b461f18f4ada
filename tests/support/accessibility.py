"""axe-core, installed from npm with exactly tests/support/axe/package-lock.json, run inside the page.

The page's Content-Security-Policy forbids inline scripts, so axe is not added as a
``<script>``: Playwright evaluates its source through the DevTools protocol, which
the policy does not govern, and the page under test stays exactly as served.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import require_tool

PACKAGE = Path(__file__).resolve().parent / "axe"
# What fails a test: axe's two worst impacts (moderate and minor findings are reported, not failed).
FAILING = ("serious", "critical")


def install_axe(cache: Path) -> Path:
    """``axe.min.js`` from ``npm ci`` of the locked package, kept under .pytest_cache by the lock's hash."""
    lock = (PACKAGE / "package-lock.json").read_bytes()
    target = cache / hashlib.sha256(lock).hexdigest()[:16] / "axe.min.js"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache) as work:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PACKAGE / name, Path(work) / name)
        installed = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr
        target.parent.mkdir(exist_ok=True)
        os.replace(Path(work) / "node_modules" / "axe-core" / "axe.min.js", target)
    return target


@pytest.fixture(name="axe_source", scope="session")
def axe_source_fixture(pytestconfig: pytest.Config) -> str:
    """The locked axe-core's source."""
    require_tool(shutil.which("npm") is not None, "npm", "apt-get install npm")
    return install_axe(Path(pytestconfig.cache.mkdir("axe"))).read_text()


def violations(page: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe's serious and critical findings on the page as it is now (WCAG 2.x A and AA, and best practice)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(f"{axe_source}\n;0")
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in found if v["impact"] in FAILING]


def assert_accessible(page: Any, axe_source: str, state: str) -> None:
    found = violations(page, axe_source)
    assert found == [], f"axe found serious or critical problems in the {state} state: {found}"
