"""The files shown in docs/plugins/write-a-plugin.md are the example plugins' files, verbatim.

The guide is followed step by step by people who never see this folder, and
this folder is what CI builds and runs the conformance suite on: the two must
not drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent
EXAMPLE = EXAMPLES / "mono-quant-nf4"
#: The float-format section shows the FP6 example; its titles start with its folder name.
FLOAT_EXAMPLE = EXAMPLES / "mono-quant-fp6"
GUIDE = Path(__file__).resolve().parent.parent / "plugins" / "write-a-plugin.md"
BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```', re.S | re.M)
EXCERPT_GAP = "\n\n# ...\n\n\n"


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def source(title: str) -> Path:
    """The example file a block shows: under the FP6 example if the title names it, else NF4's."""
    prefix = f"{FLOAT_EXAMPLE.name}/"
    return FLOAT_EXAMPLE / title.removeprefix(prefix) if title.startswith(prefix) else EXAMPLE / title


@pytest.mark.parametrize(("example", "prefix"), [(EXAMPLE, ""), (FLOAT_EXAMPLE, f"{FLOAT_EXAMPLE.name}/")])
def test_the_guide_shows_every_source_file_of_the_example(example: Path, prefix: str) -> None:
    shown = {title for title, _ in blocks()}
    files = {prefix + str(p.relative_to(example)) for p in (example / "src").rglob("*.py")}
    files |= {prefix + f for f in ("pyproject.toml", "noxfile.py", "tests/conftest.py")}
    assert files <= shown, f"not shown in the guide: {sorted(files - shown)}"


@pytest.mark.parametrize(("title", "text"), blocks(), ids=[t for t, _ in blocks()])
def test_a_file_block_equals_the_example_file(title: str, text: str) -> None:
    if title.endswith(" (excerpt)"):
        whole = source(title.removesuffix(" (excerpt)")).read_text(encoding="utf-8")
        for chunk in text.split(EXCERPT_GAP):
            assert chunk.strip("\n") in whole, f"{title}: not in the file:\n{chunk}"
    else:
        assert text == source(title).read_text(encoding="utf-8"), f"{title} differs from the example"
