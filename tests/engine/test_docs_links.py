"""The user and engineering documents point at things that exist.

Files move (the engine tree is grouped by role, benchmark results live in resources/bench/), and a
README that names a path or links a note that is gone sends a reader nowhere. Every relative Markdown
link and every back-quoted repository path in the documents must resolve in the working tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "resources" / "bench" / "README.md",
    *sorted((ROOT / "resources" / "docs").glob("*.md")),
]
# [text](target) or [text](target#anchor); web links are someone else's to keep.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# `engine/...`, `rs_ovseg_qgis/...`, `resources/...`, `tests/...` written as a path in back quotes.
REPOSITORY_PATH = re.compile(r"`((?:engine|rs_ovseg_qgis|resources|tests)/[A-Za-z0-9_./-]*)`")


def _document_ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_every_relative_link_resolves(document):
    text = document.read_text(encoding="utf-8")
    broken = [
        target
        for target in LINK.findall(text)
        if "://" not in target
        and not target.startswith("mailto:")
        and not (document.parent / target).exists()
    ]
    assert not broken, f"{_document_ids(document)} links to missing files: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_every_quoted_repository_path_exists(document):
    text = document.read_text(encoding="utf-8")
    missing = sorted(
        {path for path in REPOSITORY_PATH.findall(text) if not (ROOT / path.rstrip("/")).exists()}
    )
    assert not missing, f"{_document_ids(document)} names paths that do not exist: {missing}"


def test_link_checker_notices_a_missing_file():
    """The patterns really catch a broken link and a stale path (so a pass above means something)."""
    text = "See [the notes](docs/gone.md#top) and `engine/pipeline.py`, not [web](https://example.org)."
    assert LINK.findall(text) == ["docs/gone.md", "https://example.org"]
    assert REPOSITORY_PATH.findall(text) == ["engine/pipeline.py"]
    assert not (ROOT / "engine" / "pipeline.py").exists()  # the module became the pipeline/ package


def test_readme_opens_with_the_two_commands():
    first_lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:4]
    assert first_lines[0] == "```bash"
    assert first_lines[1].startswith("make run ")
    assert first_lines[2].startswith("make test ")
    assert first_lines[3] == "```"
