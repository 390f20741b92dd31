"""Run every ```python block of README.md and docs/*.md, page by page.

Blocks of one page share a namespace and run in order, as a reader would paste
them. Fences other than ``python`` (``text``, ``bash``, ``toml``) are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [p for p in PAGES if "examples" not in p.relative_to(ROOT).parts[:2]]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path) -> None:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip("no python blocks")
    namespace: dict[str, object] = {"__name__": f"page:{page.name}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}[block {i}]", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report any failure of a docs example as a test failure
            pytest.fail(f"{page.relative_to(ROOT)} block {i} failed: {type(exc).__name__}: {exc}\n{code}")
