"""The files shown in docs/plugins/write-a-plugin.md are the example plugin's files, verbatim.

The guide is followed step by step by people who never see this folder, and
this folder is what CI builds and runs the conformance suite on: the two must
not drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent / "mono-quant-nf4"
GUIDE = Path(__file__).resolve().parent.parent / "plugins" / "write-a-plugin.md"
BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```', re.S | re.M)
EXCERPT_GAP = "\n\n# ...\n\n\n"


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_shows_every_source_file_of_the_example() -> None:
    shown = {title for title, _ in blocks()}
    files = {str(p.relative_to(EXAMPLE)) for p in (EXAMPLE / "src").rglob("*.py")}
    files |= {"pyproject.toml", "noxfile.py", "tests/conftest.py"}
    assert files <= shown, f"not shown in the guide: {sorted(files - shown)}"


@pytest.mark.parametrize(("title", "text"), blocks(), ids=[t for t, _ in blocks()])
def test_a_file_block_equals_the_example_file(title: str, text: str) -> None:
    if title.endswith(" (excerpt)"):
        source = (EXAMPLE / title.removesuffix(" (excerpt)")).read_text(encoding="utf-8")
        for chunk in text.split(EXCERPT_GAP):
            assert chunk.strip("\n") in source, f"{title}: not in the file:\n{chunk}"
    else:
        assert text == (EXAMPLE / title).read_text(encoding="utf-8"), f"{title} differs from the example"
