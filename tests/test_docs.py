"""The documents a reader follows: the README stays a front door and every link in the docs leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_a_front_door_of_at_most_250_lines() -> None:
    """The README is short; the reference lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_readme_links_every_docs_page() -> None:
    """Each page under docs/ is reachable from the README."""
    readme = (ROOT / "README.md").read_text()
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert {"api.md", "configuration.md", "deployment.md", "security.md", "operations.md"} <= set(pages)
    assert [page for page in pages if f"(docs/{page})" not in readme] == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(document: Path) -> None:
    """A link to another file of the repository (and its #anchor's heading) resolves."""
    broken = []
    for target in _LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s) and mailto links leave the repository
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path) if path else document
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)
            slugs = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}
            if anchor not in slugs:
                broken.append(target)
    assert broken == []


def _layout_block() -> str:
    text = (ROOT / "docs" / "development.md").read_text()
    section = text.split("## Layout", 1)[1]
    return section.split("```", 2)[1]


def test_development_layout_names_every_module_of_the_service() -> None:
    """docs/development.md draws the tree: every module under service/ appears in it, in its folder."""
    block = _layout_block()
    missing = []
    for module in sorted((ROOT / "service").rglob("*.py")):
        relative = module.relative_to(ROOT / "service")
        if relative.name == "__init__.py":
            continue
        folder = f"{relative.parent}/" if relative.parent != Path(".") else "service/"
        folder_at = block.find(f" {folder}" if folder != "service/" else "service/")
        entry_at = block.find(f" {relative.name} ", folder_at) if folder_at >= 0 else -1
        if entry_at < 0:
            missing.append(str(relative))
    assert missing == []


def test_development_layout_names_no_module_that_is_gone() -> None:
    """Every ``name.py`` the tree mentions under service/ exists."""
    block = _layout_block().split("tests/", 1)[0]
    named = set(re.findall(r"^\s+([a-z_]+\.py)\b", block, re.M))
    existing = {path.name for path in (ROOT / "service").rglob("*.py")}
    assert sorted(named - existing) == []
