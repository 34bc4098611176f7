"""Every ```python block in the README and docs/ runs (blocks of one page share a namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    blocks = BLOCK.findall(page.read_text())
    if any("../shared/data" in code for code in blocks) and not SHARED_DATA.is_dir():
        pytest.skip(f"{page.name} reads ../shared/data, which is absent")
    namespace: dict = {"__name__": "__docs__"}
    for code in blocks:
        code = code.replace("../shared/data", str(SHARED_DATA))
        exec(compile(code, str(page), "exec"), namespace)


def test_model_sizes_page_is_current():
    import unetlab
    from unetlab.models.profile import count_parameters

    text = (ROOT / "docs" / "models" / "sizes.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| (\d+) \| (\d+) \| ([\d,]+) \|", text, re.M)
    assert len(rows) >= 10
    for name, opts, cin, ncls, params in rows:
        options = {} if opts == "defaults" else eval(f"dict({opts})")
        model = unetlab.create_model(name, in_channels=int(cin), num_classes=int(ncls), **options)
        assert count_parameters(model) == int(params.replace(",", "")), (name, opts)
