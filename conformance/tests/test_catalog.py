"""The check catalog: behavioural names, one-line summaries, docs for every check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mono_quant.conformance import API_CHECKS, Case, all_checks

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "checks.md"


def test_every_check_is_a_named_function_with_a_one_line_summary() -> None:
    checks = all_checks()
    assert len({c.name for c in checks}) == len(checks)
    for c in checks:
        assert c.name.startswith("check_") and c.func.__name__ == c.name
        assert c.summary and c.summary != c.name and len(c.summary) <= 100, c.name


def test_the_api_checks_exist_and_are_flagged() -> None:
    by_name = {c.name: c for c in all_checks()}
    assert set(API_CHECKS) <= set(by_name)
    assert {n for n, c in by_name.items() if c.api} == set(API_CHECKS)


def test_the_issue_s_checks_are_all_in_the_catalog() -> None:
    names = {c.name for c in all_checks()}
    for needed in (
        "check_zero_range_gives_finite_scale",
        "check_float_targets_are_a_plain_cast",
        "check_codes_and_zero_point_inside_qmin_qmax",
        "check_round_trip_error_within_half_scale",
        "check_zero_is_exactly_representable",
        "check_symmetric_zero_point_rule",
        "check_nonfinite_input_follows_policy",
        "check_nondivisible_group_follows_policy",
        "check_input_is_not_mutated",
        "check_same_input_gives_identical_output",
        "check_output_on_input_device",
        "check_qparams_match_torch_ao",
        "check_packing_round_trip",
    ):
        assert needed in names


def test_a_case_label_joins_dtype_and_granularity() -> None:
    assert Case("int4", "per_group").label == "int4-per_group" and Case("int8").label == "int8"


@pytest.mark.skipif(not DOCS.is_file(), reason="docs/ is not beside this checkout")
def test_every_check_has_a_section_in_the_checks_docs() -> None:
    headings = set(re.findall(r"^#{2,4} `(check_\w+)`", DOCS.read_text(encoding="utf-8"), re.M))
    missing = {c.name for c in all_checks()} - headings
    assert not missing, f"undocumented in {DOCS}: {sorted(missing)}"
    assert not headings - {c.name for c in all_checks()}, "docs describe checks that do not exist"
