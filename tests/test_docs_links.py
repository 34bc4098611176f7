"""Relative links in the README and docs/ point at files that exist, and every figure
of unetlab.figures is committed under docs/figures and shown by some page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code blocks
    missing = [link for link in LINK.findall(text)
               if "://" not in link and not link.startswith("mailto:")
               and not (page.parent / link).exists()]
    assert not missing, f"{page.relative_to(ROOT)}: broken links {missing}"


def test_every_figure_is_committed_and_shown():
    from unetlab.figures import FIGURES

    shown = " ".join(p.read_text() for p in PAGES)
    for name in FIGURES:
        png = ROOT / "docs" / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size < 120_000, name
        assert f"figures/{name}.png" in shown, f"{name}.png is in no page"
