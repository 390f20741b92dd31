"""Expected-failure declarations: patterns, reasons, files, pyproject tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mono_quant.conformance import ExpectedFailure, ExpectedFailures, ExpectedFailuresError

ID = "check_zero_range_gives_finite_scale[mono-quant-nf4:nf4-nf4-per_group]"


@pytest.mark.parametrize(
    ("pattern", "covers"),
    [
        (ID, True),
        ("check_zero_range_gives_finite_scale", True),
        ("check_zero_range_gives_finite_scale[mono-quant-nf4:nf4]", True),
        ("check_zero_range_gives_finite_scale[nf4]", True),
        ("check_zero_range_gives_finite_scale[nf4-nf4]", True),
        ("check_zero_range_gives_finite_scale[*per_group]", True),
        ("check_zero_range_*[mono-quant-nf4:*]", True),
        ("check_zero_range_gives_finite_scale[nf]", False),  # a prefix must end at a '-'
        ("check_zero_range_gives_finite_scale[nf4-nf4-per_channel]", False),
        ("check_round_trip_error_within_half_scale", False),
        ("check_zero_range_gives_finite_scale[mono-quant-sym:nf4]", False),
    ],
)
def test_a_pattern_covers_exact_ids_prefixes_at_dashes_and_wildcards(pattern: str, covers: bool) -> None:
    assert ExpectedFailure(pattern, "why", "test").matches(ID) is covers


def test_every_entry_needs_a_reason() -> None:
    with pytest.raises(ExpectedFailuresError, match="has no reason"):
        ExpectedFailures.from_mapping({ID: "  "}, source="test")


def test_a_text_file_takes_an_id_and_a_reason_per_line(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text(f"# comment line\n\n{ID}  # codebook scale (#3)\n")
    (entry,) = ExpectedFailures.from_file(path).entries
    assert (entry.pattern, entry.reason, entry.source) == (ID, "codebook scale (#3)", f"{path}:3")
    path.write_text(f"{ID}\n")
    with pytest.raises(ExpectedFailuresError, match=r"xfails.txt:1: .* has no reason"):
        ExpectedFailures.from_file(path)


def test_the_pyproject_table_holds_entries_files_and_the_stale_mode(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("check_packing_round_trip  # not yet\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.mono-quant.conformance]\n"
        'expected-failures-files = ["more.txt"]\n'
        'stale = "warn"\n'
        "[tool.mono-quant.conformance.expected-failures]\n"
        f'"{ID}" = "codebook"\n'
    )
    found = ExpectedFailures.from_pyproject(tmp_path / "pyproject.toml")
    assert [e.pattern for e in found.entries] == [ID, "check_packing_round_trip"]
    assert found.stale == "warn"
    assert found.match(ID) is not None and found.match("check_other[x]") is None


def test_a_pyproject_without_the_table_declares_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert ExpectedFailures.from_pyproject(tmp_path / "pyproject.toml").entries == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("expected-failure = {}\n", "unknown key"),
        ('stale = "ignore"\n', "'stale' must be"),
        ('expected-failures = ["x"]\n', "must be a table"),
    ],
)
def test_a_malformed_table_is_refused_with_what_is_wrong(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mono-quant.conformance]\n" + table)
    with pytest.raises(ExpectedFailuresError, match=message):
        ExpectedFailures.from_pyproject(tmp_path / "pyproject.toml")


def test_unknown_reports_entries_whose_check_does_not_exist() -> None:
    found = ExpectedFailures.from_mapping(
        {"check_a[x]": "r", "check_b": "r", "check_a*": "r", "check_z*": "r"}, source="t"
    )
    assert [e.pattern for e in found.unknown(["check_a"])] == ["check_b", "check_z*"]


def test_merging_keeps_all_entries_and_the_more_lenient_stale_mode() -> None:
    a = ExpectedFailures.from_mapping({"check_a": "r"}, source="a")
    b = ExpectedFailures((), stale="warn")
    merged = a + b
    assert [e.pattern for e in merged.entries] == ["check_a"] and merged.stale == "warn"
