"""Deliberately broken schemes: the suite must fail each one on its intended check, clearly.

The schemes live in broken_schemes.py, each a realistic bug in a scheme plugin, fed
to the runner in process (``run([BrokenScheme()])``). A faithful control scheme,
built the same way, must pass the same checks. test_broken_properties.py does the
same for the properties of issue 10.
"""

from __future__ import annotations

import pytest
from broken_schemes import DETECTIONS, Control, ScaleNotClamped, TruncatingRounding

from mono_quant.conformance import run
from mono_quant.core import MinMaxScheme


@pytest.mark.parametrize(("broken", "check", "phrase"), DETECTIONS, ids=[d[0].name for d in DETECTIONS])
def test_a_broken_scheme_fails_its_intended_check_with_a_clear_message(
    broken: type[MinMaxScheme], check: str, phrase: str
) -> None:
    results = run([broken()], checks=[check], max_examples=10)
    failed = results.failed
    assert failed, f"{broken.name} passed {check}: " + ", ".join(f"{r.id}={r.status}" for r in results)
    message = failed[0].message
    assert phrase in message
    assert f"[local:{broken.name}] {check}" in message  # names the scheme and the check
    assert "dtype" in message  # and the dtype of the failing case
    assert failed[0].id.startswith(f"{check}[local:{broken.name}-")


def test_the_control_scheme_passes_every_check_that_catches_a_broken_one() -> None:
    checks = sorted({check for _, check, _ in DETECTIONS})
    results = run([Control()], checks=checks, max_examples=10)
    assert results.ok, "\n".join(r.message for r in results.failed)
    assert results.counts()["passed"] > 0


def test_a_hypothesis_failure_names_the_input_and_the_seed() -> None:
    results = run([TruncatingRounding()], checks=["check_round_trip_error_within_half_scale"], max_examples=5)
    message = results.failed[0].message
    assert "input: " in message and "granularity: " in message
    assert results.failed[0].seed is not None
    assert f"hypothesis seed: {results.failed[0].seed}" in message


def test_a_broken_scheme_does_not_stop_the_other_checks() -> None:
    results = run(
        [ScaleNotClamped()],
        checks=["check_zero_range_gives_finite_scale", "check_qparam_shapes_and_dtypes"],
        max_examples=5,
    )
    statuses = {r.check: r.status for r in results if r.case.startswith("int8-per_tensor")}
    assert statuses == {
        "check_zero_range_gives_finite_scale": "failed",
        "check_qparam_shapes_and_dtypes": "passed",
    }
