"""Conformance for observer plugins: run the observer checks from Python or from your own tests.

The pytest plugin runs them too: ``pytest --mono-quant-conformance --scheme <distribution>``
collects the observer checks of the distribution's observers beside its scheme checks
(``--scheme <observer name>`` selects one observer).

>>> from mono_quant.conformance import observers
>>> "check_observer_state_round_trip" in [c.name for c in observers.all_checks()]
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mono_quant.conformance._expected import ExpectedFailures
from mono_quant.conformance._observer_suite import (
    ObserverCheck,
    ObserverSubject,
    PlannedObserverCheck,
    all_observer_checks,
    execute,
    plan_observers,
    resolve_observer_subjects,
)
from mono_quant.conformance._results import Results
from mono_quant.conformance._runner import DEFAULT_PROFILE, Runner

if TYPE_CHECKING:
    from mono_quant.core import Observer

__all__ = [
    "ObserverCheck",
    "ObserverSubject",
    "PlannedObserverCheck",
    "all_checks",
    "parametrize_with_checks",
    "run",
]


def all_checks() -> list[ObserverCheck]:
    """Every observer check, in run order."""
    return all_observer_checks()


def _select(names: Iterable[str] | None) -> list[ObserverCheck]:
    catalog = all_observer_checks()
    if names is None:
        return catalog
    by_name = {c.name: c for c in catalog}
    wanted = list(names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown observer check(s) {', '.join(unknown)}; known: {', '.join(by_name)}.")
    return [by_name[n] for n in wanted]


def _subjects(observers: Sequence[str | type[Observer]] | None) -> list[ObserverSubject]:
    subjects, _ = resolve_observer_subjects(observers)
    if observers and not subjects:
        from mono_quant.core import list_observers

        raise ValueError(
            f"no installed observer or distribution is called {', '.join(map(str, observers))}; "
            f"installed observers: {', '.join(list_observers()) or 'none'}."
        )
    return subjects


def run(
    observers: Sequence[str | type[Observer]] | None = None,
    *,
    checks: Iterable[str] | None = None,
    expected_failures: Mapping[str, str] | None = None,
    profile: str = DEFAULT_PROFILE,
    max_examples: int | None = None,
    seed: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
) -> Results:
    """Run the observer checks in process and return every result.

    ``observers`` are installed observer or distribution names, or Observer classes
    (tested in process); ``None`` tests every installed observer.

    >>> res = run(checks=["check_observer_reset_forgets_everything"])  # every installed observer
    >>> res.ok
    True
    """
    expected = ExpectedFailures.from_mapping(expected_failures or {}, source="run(expected_failures=...)")
    subjects = _subjects(observers)
    runner = Runner(profile=profile, max_examples=max_examples, seed=seed, expected=expected)
    results = Results(
        [execute(runner, p) for p in plan_observers(subjects, _select(checks))],
        subjects=[s.describe() for s in subjects],
        environment=runner.environment(),
    )
    if json_path is not None:
        results.write_json(json_path)
    return results


def parametrize_with_checks(
    observers: Sequence[str | type[Observer]],
    *,
    expected_failed_checks: Mapping[str, str] | None = None,
    profile: str = DEFAULT_PROFILE,
) -> Any:
    """A ``pytest.mark.parametrize`` over every observer check of ``observers``, for your own tests.

    Use it as::

        @parametrize_with_checks(["my-observer"])
        def test_observer_conformance(check):
            check()
    """
    import pytest

    from mono_quant.conformance._pytest_support import raise_outcome

    expected = ExpectedFailures.from_mapping(
        expected_failed_checks or {}, source="parametrize_with_checks(expected_failed_checks=...)"
    )
    runner = Runner(profile=profile, expected=expected)
    planned = plan_observers(_subjects(observers))

    def bind(p: PlannedObserverCheck) -> Any:
        def check() -> None:
            raise_outcome(execute(runner, p), stale="fail")

        check.__name__ = p.check.name
        return check

    return pytest.mark.parametrize("check", [bind(p) for p in planned], ids=[p.id for p in planned])
