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
