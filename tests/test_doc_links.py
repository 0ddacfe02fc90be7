"""The README and docs/ link only to what is in the repository: a reader of a checkout
(or of the repository on a forge) can follow every relative link."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A markdown link's target, or a path written in backticks that leaves the directory.
_LINK = re.compile(r"\]\(([^)\s]+)\)|`(\.\./[^`\s]+)`")


def broken_links(doc: Path) -> list[str]:
    """Relative link targets of ``doc`` that are missing or outside the repository."""
    broken = []
    for link, path_in_code in _LINK.findall(doc.read_text()):
        target = link or path_in_code
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL, or an anchor in the same page
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            broken.append(target)
    return broken


def test_links_stay_in_the_repository() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert {d.name: broken_links(d) for d in docs} == {d.name: [] for d in docs}


def test_a_link_outside_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[design](../shared/ARCHITECTURE.md) [web](https://example.com)\n"
                    "see `../shared/ARCHITECTURE.md`; [top](#top)\n")
    assert broken_links(page) == ["../shared/ARCHITECTURE.md"] * 2
