"""The programmatic runner: selection, results, seeds, expected failures, parametrize_with_checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from mono_quant.conformance import (
    CheckResult,
    Runner,
    SelectionError,
    all_checks,
    parametrize_with_checks,
    plan,
    resolve_subjects,
    run,
)
from mono_quant.core import Capabilities, MinMaxScheme, QuantDtype, asymmetric_qparams

ZERO_RANGE = "check_zero_range_gives_finite_scale"
ROUND_TRIP = "check_round_trip_error_within_half_scale"


class Unclamped(MinMaxScheme):
    """An asymmetric scheme whose scale has no eps floor (fails on a zero range)."""

    name = "unclamped"
    version = "1.0"
    capabilities = Capabilities(dtypes=("int8",), granularities=("per_tensor",))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo0, hi0 = lo.clamp(max=0), hi.clamp(min=0)
        scale = (hi0 - lo0) / 255.0
        zp = torch.where(scale > 0, -128 - torch.round(lo0 / scale), torch.full_like(scale, -128))
        return scale.float(), zp.clamp(-128, 127).to(torch.int32)


class Faithful(MinMaxScheme):
    name = "faithful"
    version = "1.0"
    capabilities = Capabilities(dtypes=("int8",), granularities=("per_tensor",))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


def test_a_distribution_name_selects_all_its_schemes_after_the_distribution() -> None:
    ids = [s.id for s in resolve_subjects(["mono-quant-int4"])]
    assert ids == ["mono-quant-int4", "mono-quant-int4:int4-symmetric", "mono-quant-int4:int4-asymmetric"]
    assert [s.id for s in resolve_subjects(["mono_quant_int4"])] == ids  # any spelling of the name


def test_an_unknown_name_lists_the_installed_schemes_and_distributions() -> None:
    with pytest.raises(
        SelectionError, match=r"'nope'.*Installed schemes: .*symmetric.*distributions: .*mono-quant-sym"
    ):
        resolve_subjects(["nope"])


def test_scheme_objects_run_in_process_under_a_local_distribution() -> None:
    results = run([Faithful()], checks=[ZERO_RANGE, "check_distribution_loads"])
    by_check = {r.check: r for r in results}
    assert by_check[ZERO_RANGE].id == f"{ZERO_RANGE}[local:faithful-int8-per_tensor]"
    assert by_check[ZERO_RANGE].status == "passed"
    assert by_check["check_distribution_loads"].status == "skipped"
    assert "entry points" in by_check["check_distribution_loads"].reason


def test_a_check_that_does_not_apply_is_skipped_with_its_reason() -> None:
    checks = ["check_quantize_picks_nearest_code", "check_qparams_match_torch_ao"]
    results = run(["symmetric"], checks=checks, max_examples=1)
    skipped = [r for r in results if r.status == "skipped"]
    assert {r.check for r in skipped} >= {"check_quantize_picks_nearest_code"}
    assert all(r.reason for r in skipped)
    assert all("affine scheme" in r.reason for r in skipped if r.check == "check_quantize_picks_nearest_code")


def test_results_and_the_json_summary_carry_status_reason_and_seed(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    results = run([Unclamped(), Faithful()], checks=[ZERO_RANGE, ROUND_TRIP], max_examples=3, json_path=path)
    assert not results.ok
    assert {r.id for r in results.failed} == {
        f"{ZERO_RANGE}[local:unclamped-int8-per_tensor]",
        f"{ROUND_TRIP}[local:unclamped-int8-per_tensor]",
    }
    failed = results.by_check(ZERO_RANGE)[0]
    assert "scale must be finite and > 0" in failed.reason
    data = json.loads(path.read_text())
    assert data["summary"] == results.counts()
    assert data["environment"]["max_examples"] == 3 and data["environment"]["derandomize"] is True
    rows = {r["id"]: r for r in data["results"]}
    trip = rows[f"{ROUND_TRIP}[local:faithful-int8-per_tensor]"]
    assert trip["status"] == "passed" and isinstance(trip["hypothesis_seed"], int)
    assert rows[failed.id]["hypothesis_seed"] is None  # the zero-range check draws nothing


def test_the_ci_profile_derives_the_same_seed_every_run_and_an_explicit_seed_wins() -> None:
    first = run([Faithful()], checks=[ROUND_TRIP], max_examples=2).results[0].seed
    again = run([Faithful()], checks=[ROUND_TRIP], max_examples=2).results[0].seed
    assert first == again is not None
    assert run([Faithful()], checks=[ROUND_TRIP], max_examples=2, seed=1234).results[0].seed == 1234


def test_the_dev_profile_draws_a_fresh_seed() -> None:
    runner = Runner(profile="mono-quant-dev")
    planned = plan(resolve_subjects([Faithful()]), [c for c in all_checks() if c.name == ROUND_TRIP])[0]
    assert runner.max_examples == 100 and not runner.derandomize
    assert len({runner.seed_for(planned) for _ in range(4)}) > 1


def test_expected_failures_turn_failures_into_xfail_and_passes_into_stale() -> None:
    expected = {
        f"{ZERO_RANGE}[unclamped]": "no eps floor (tracked in #7)",
        f"{ZERO_RANGE}[local:faithful-int8-per_tensor]": "believed broken",
    }
    results = run([Unclamped(), Faithful()], checks=[ZERO_RANGE], expected_failures=expected)
    status = {r.scheme: r for r in results}
    assert status["unclamped"].status == "xfail"
    assert "no eps floor (tracked in #7)" in status["unclamped"].reason
    assert status["faithful"].status == "stale" and "remove the entry" in status["faithful"].reason
    assert not results.ok and results.stale == [status["faithful"]]


def test_an_expected_failure_for_an_unknown_check_is_refused() -> None:
    with pytest.raises(ValueError, match="check_zero_rnge"):
        run([Faithful()], checks=[ZERO_RANGE], expected_failures={"check_zero_rnge": "typo"})


def test_expected_failures_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text(f"# known\n{ZERO_RANGE}[unclamped]  # no floor\n")
    results = run([Unclamped()], checks=[ZERO_RANGE], expected_failures=path)
    assert [r.status for r in results] == ["xfail"]
    assert results.results[0].expected_reason == "no floor"


def test_an_unknown_check_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown check"):
        run([Faithful()], checks=["check_does_not_exist"])


check_marks = parametrize_with_checks([Faithful()])


@check_marks
def test_parametrize_with_checks_runs_each_check_as_a_test(check: object) -> None:
    assert callable(check)
    check()


def test_parametrize_with_checks_names_each_parameter_by_its_test_id() -> None:
    ids = check_marks.kwargs["ids"]
    assert f"{ZERO_RANGE}[local:faithful-int8-per_tensor]" in ids
    assert len(ids) == len(set(ids))


def test_a_result_reports_ok_unless_failed_or_stale() -> None:
    def result(status: str) -> CheckResult:
        return CheckResult("c[d]", "c", "d", "1", None, "", status)  # type: ignore[arg-type]

    assert [result(s).ok for s in ("passed", "skipped", "xfail", "failed", "stale")] == [
        True, True, True, False, False,
    ]  # fmt: skip


def test_without_torchao_the_torchao_profile_s_golden_check_is_skipped_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("torchao", "torchao.quantization", "torchao.quantization.quant_primitives"):
        monkeypatch.setitem(sys.modules, module, None)  # makes importing it fail, as if not installed
    results = run(["symmetric"], checks=["check_qparams_match_torch_ao"], max_examples=1)
    torchao = [r for r in results if r.case.endswith("-torchao")]
    assert torchao and all(r.status == "skipped" for r in torchao), [r.message for r in results.failed][:2]
    assert {r.case for r in torchao if "torchao is not installed" in r.reason} >= {"int8-per_tensor-torchao"}
    assert any(r.status == "passed" for r in results if r.case.endswith("per_tensor"))  # torch.ao still runs
