"""What pyproject.toml claims agrees with what the lock tests: every floor is the locked version.

The floors are not guesses about older releases: CI installs requirements/*.txt
and runs the suite on exactly those versions, so a floor says "this is what was
tested". These checks read files only (no network).
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = ("app", "dev", "test")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.M)


def locked(lock: str) -> dict[str, str]:
    """Package name (canonical) -> version, as requirements/<lock>.txt pins it."""
    text = (ROOT / "requirements" / f"{lock}.txt").read_text()
    return {canonicalize_name(name): version for name, version in _PIN.findall(text)}


def direct_requirements() -> list[Requirement]:
    """Every requirement pyproject.toml names: the service's, each extra's and the build backend's."""
    project = PYPROJECT["project"]
    names = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for extra in project["optional-dependencies"].values():
        names += [name for name in extra if not name.startswith("soundpost")]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize("requirement", direct_requirements(), ids=str)
def test_every_floor_is_the_version_the_lock_tests(requirement: Requirement) -> None:
    """A direct dependency's only bound is >= (or == for the linters) the version in the test lock."""
    (specifier,) = requirement.specifier
    assert specifier.operator in (">=", "=="), f"{requirement}: a floor, not a range"
    assert specifier.version == locked("test")[canonicalize_name(requirement.name)], requirement


def test_the_app_and_dev_locks_hold_the_test_locks_versions() -> None:
    """requirements/compile resolves app and dev inside test: one version of each package everywhere."""
    test = locked("test")
    for lock in ("app", "dev"):
        differing = {
            name: (version, test.get(name))
            for name, version in locked(lock).items()
            if test.get(name) != version
        }
        assert differing == {}, lock


def test_the_app_lock_holds_every_service_dependency() -> None:
    """The production image installs requirements/app.txt: it has every package the service declares."""
    app = locked("app")
    missing = [
        str(r)
        for r in map(Requirement, PYPROJECT["project"]["dependencies"])
        if canonicalize_name(r.name) not in app
    ]
    assert missing == []


def test_this_environment_runs_the_locked_versions() -> None:
    """The suite is testing what the lock says (run.py installs it with --require-hashes)."""
    test = locked("test")
    drifted = {
        str(r.name): (importlib.metadata.version(r.name), test[canonicalize_name(r.name)])
        for r in direct_requirements()
        if importlib.metadata.version(r.name) != test[canonicalize_name(r.name)]
    }
    assert drifted == {}


def test_every_lock_pins_every_package_with_a_hash() -> None:
    """Each pinned package is followed by at least one --hash, so pip's --require-hashes can check it."""
    for lock in LOCKS:
        text = (ROOT / "requirements" / f"{lock}.txt").read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text)
        unhashed = [e.split(" ", 1)[0] for e in entries if _PIN.match(e) and "--hash=sha256:" not in e]
        assert unhashed == [], lock
