"""The observer checks: a correct observer passes them all, and each kind of broken one fails its check.

The observers are defined here (tested in process), so the suite's own tests need no
observer plugin installed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from mono_quant.conformance import observers
from mono_quant.conformance._observer_suite import resolve_observer_subjects
from mono_quant.core import Observer, ObserverCapabilities, QuantDtype, Scheme


class Range(Observer):
    """A correct running min/max observer."""

    name, version = "test-range", "1.0"

    def __init__(self, granularity: Any = None, *, nonfinite: Any = "raise") -> None:
        super().__init__(granularity, nonfinite=nonfinite)

    def reset_state(self) -> None:
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None

    def update(self, rows: torch.Tensor) -> None:
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        self.lo = lo if self.lo is None else torch.min(self.lo, lo)
        self.hi = hi if self.hi is None else torch.max(self.hi, hi)

    def merge_state(self, other: Any) -> None:
        if other.lo is not None:
            self.lo = other.lo.clone() if self.lo is None else torch.min(self.lo, other.lo)
            self.hi = other.hi.clone() if self.hi is None else torch.max(self.hi, other.hi)

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        return {"lo": self.lo, "hi": self.hi}

    def import_state(self, state: dict[str, Any]) -> None:
        self.lo, self.hi = state["lo"], state["hi"]

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.lo is not None and self.hi is not None
        shape = () if self.granularity.kind == "per_tensor" else (-1,)
        return self.lo.reshape(shape), self.hi.reshape(shape)


class MergeDoesNothing(Range):
    name = "test-merge-does-nothing"

    def merge_state(self, other: Any) -> None:
        pass


class LastBatchOnly(Range):
    """Keeps only the last batch's range, yet claims to be order-free."""

    name = "test-last-batch-only"

    def update(self, rows: torch.Tensor) -> None:
        self.lo, self.hi = rows.amin(dim=1), rows.amax(dim=1)


class MutatesInput(Range):
    name = "test-mutates-input"

    def update(self, rows: torch.Tensor) -> None:
        super().update(rows)
        rows.mul_(1.0 + 2**-10)  # rows is a view of the caller's float32 batch


class ForgetsOnLoad(Range):
    name = "test-forgets-on-load"

    def import_state(self, state: dict[str, Any]) -> None:
        self.lo, self.hi = state["lo"], None if state["hi"] is None else state["hi"] * 2


class ResetKeepsRange(Range):
    name = "test-reset-keeps-range"

    def reset_state(self) -> None:
        if not hasattr(self, "lo"):
            super().reset_state()


class SkipsByDefault(Range):
    name = "test-skips-by-default"
    capabilities = ObserverCapabilities(nonfinite=("skip", "raise"))

    def __init__(self, granularity: Any = None, *, nonfinite: Any = "skip") -> None:
        Observer.__init__(self, granularity, nonfinite=nonfinite)


class WrongShape(Range):
    name = "test-wrong-shape"

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.lo is not None and self.hi is not None
        return self.lo.reshape(-1)[:1], self.hi.reshape(-1)[:1]


class SwallowsNonFinite(Range):
    """Overrides observe itself and so bypasses the non-finite policy."""

    name = "test-swallows-nonfinite"

    def observe(self, x: torch.Tensor, *, name: str | None = None) -> None:
        clean = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        super().observe(clean, name=name)


class Unstable(Range):
    """Adds a different tiny jitter on every instance: not deterministic."""

    name = "test-unstable"
    counter: ClassVar[list[int]] = [0]

    def update(self, rows: torch.Tensor) -> None:
        Unstable.counter[0] += 1
        super().update(rows + Unstable.counter[0] * 1e-3)


def failures(cls: type[Observer], check: str) -> list[str]:
    results = observers.run([cls], checks=[check])
    assert results.results, f"{check} planned nothing for {cls.name}"
    return [r.message for r in results.results if r.status == "failed"]


def test_a_correct_observer_passes_every_check() -> None:
    results = observers.run([Range])
    assert results.ok, [r.message for r in results.failed]
    assert results.counts()["passed"] >= 15
    ids = [r.id for r in results.results]
    assert "check_observer_merge_equals_sequential_observation[local:test-range-per_channel]" in ids


@pytest.mark.parametrize(
    ("cls", "check", "fragment"),
    [
        (
            MergeDoesNothing,
            "check_observer_merge_equals_sequential_observation",
            "differs from observing a then b",
        ),
        (LastBatchOnly, "check_observer_split_batch_equals_whole", "observing the split"),
        (MutatesInput, "check_observer_is_deterministic", "observe() modified a batch"),
        (ForgetsOnLoad, "check_observer_state_round_trip", "the loaded state"),
        (ResetKeepsRange, "check_observer_reset_forgets_everything", "after reset()"),
        (SkipsByDefault, "check_observer_declares_name_version_and_capabilities", "must be 'raise'"),
        (WrongShape, "check_observer_per_channel_shapes", "broke the observer contract"),
        (SwallowsNonFinite, "check_observer_nonfinite_batch_follows_policy", "accepted a non-finite batch"),
        (Unstable, "check_observer_is_deterministic", "hold different states"),
    ],
)
def test_each_broken_observer_fails_its_check_with_a_message(
    cls: type[Observer], check: str, fragment: str
) -> None:
    messages = failures(cls, check)
    assert messages and all(fragment in m for m in messages), messages
    assert all(f"local:{cls.name}" in m for m in messages)


def test_checks_that_do_not_apply_are_skipped_with_the_reason() -> None:
    class PerTensorOnly(Range):
        name = "test-per-tensor-only"
        capabilities = ObserverCapabilities(granularities=("per_tensor",), order_free=False)

    results = observers.run([PerTensorOnly])
    skipped = {r.check: r.reason for r in results.results if r.status == "skipped"}
    assert "does not claim per_channel" in skipped["check_observer_per_channel_shapes"]
    assert "order_free=False" in skipped["check_observer_split_batch_equals_whole"]
    assert results.ok


def test_expected_failures_apply_to_observer_checks() -> None:
    pattern = "check_observer_merge_equals_sequential_observation[local:test-merge-does-nothing-*]"
    results = observers.run(
        [MergeDoesNothing],
        checks=["check_observer_merge_equals_sequential_observation"],
        expected_failures={pattern: "merge is not implemented yet"},
    )
    assert {r.status for r in results.results} == {"xfail"} and results.ok


def test_selection_consumes_observer_names_and_keeps_distribution_names() -> None:
    subjects, rest = resolve_observer_subjects([Range, "mono-quant-sym"])
    assert [s.id for s in subjects] == ["local:test-range"] and rest == ["mono-quant-sym"]
    assert resolve_observer_subjects(None)[1] == []
