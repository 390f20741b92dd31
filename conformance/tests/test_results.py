"""Failure messages and the results container."""

from __future__ import annotations

import json
from pathlib import Path

from mono_quant.conformance import CheckResult, ConformanceError, Results
from mono_quant.core import PerGroup


def test_a_failure_message_carries_context_dtype_granularity_input_and_seed() -> None:
    error = ConformanceError(
        "scale is 0.0", dtype="int4", granularity=PerGroup(-1, 32), input="torch.zeros(4)"
    )
    error.context = "[dist:scheme] check_x (int4-per_group)"
    error.seed = 42
    text = str(error)
    assert text.splitlines()[0] == "[dist:scheme] check_x (int4-per_group): scale is 0.0"
    assert "  dtype: int4" in text and "  granularity: PerGroup(axis=-1, group_size=32)" in text
    assert "  input: torch.zeros(4)" in text and "--mono-quant-seed 42" in text


def test_results_write_a_json_summary_with_counts(tmp_path: Path) -> None:
    results = Results(
        [
            CheckResult("c[d:s-int8]", "c", "d", "1.0", "s", "int8", "passed", seed=3),
            CheckResult("c[d:s-uint8]", "c", "d", "1.0", "s", "uint8", "xfail", "known"),
        ],
        environment={"torch": "x"},
    )
    results.write_json(tmp_path / "deep" / "summary.json")
    data = json.loads((tmp_path / "deep" / "summary.json").read_text())
    assert data["summary"]["passed"] == 1 and data["summary"]["xfail"] == 1 and data["summary"]["failed"] == 0
    assert data["results"][0]["hypothesis_seed"] == 3 and data["results"][1]["reason"] == "known"
    assert results.ok
