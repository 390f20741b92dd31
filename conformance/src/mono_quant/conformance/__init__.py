"""mono-quant-conformance: the suite every scheme plugin runs.

Run it with pytest (``pytest --mono-quant-conformance [--scheme NAME]``), from
Python (:func:`run`), or inside your own tests (:func:`parametrize_with_checks`).
Importing this package does not import torch; running checks does.
"""

from __future__ import annotations

import importlib.metadata as _md
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mono_quant.conformance._catalog import API_CHECKS, Case, Check, all_checks
from mono_quant.conformance._expected import ExpectedFailure, ExpectedFailures, ExpectedFailuresError
from mono_quant.conformance._results import CheckResult, CheckSkipped, ConformanceError, Results
from mono_quant.conformance._runner import DEFAULT_PROFILE, CheckContext, PlannedCheck, Runner, plan, run
from mono_quant.conformance._selection import SelectionError, Subject, resolve_subjects

if TYPE_CHECKING:
    from mono_quant.core import Scheme

try:
    __version__ = _md.version("mono-quant-conformance")
except _md.PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "API_CHECKS",
    "DEFAULT_PROFILE",
    "Case",
    "Check",
    "CheckContext",
    "CheckResult",
    "CheckSkipped",
    "ConformanceError",
    "ExpectedFailure",
    "ExpectedFailures",
    "ExpectedFailuresError",
    "PlannedCheck",
    "Results",
    "Runner",
    "SelectionError",
    "Subject",
    "__version__",
    "all_checks",
    "parametrize_with_checks",
    "plan",
    "resolve_subjects",
    "run",
]


def parametrize_with_checks(
    schemes: Sequence[str | Scheme],
    *,
    expected_failed_checks: dict[str, str] | None = None,
    profile: str = DEFAULT_PROFILE,
) -> Any:
    """A ``pytest.mark.parametrize`` over every check of ``schemes``, for your own test file.

    Each parameter is a callable that runs one check and raises, skips or xfails
    as pytest expects. ``expected_failed_checks`` maps test id patterns to reasons.

    >>> import pytest
    >>> mark = parametrize_with_checks(["symmetric"])
    >>> mark.name, mark.args[0]
    ('parametrize', 'check')

    Use it as::

        @parametrize_with_checks(["my-scheme"])
        def test_conformance(check):
            check()
    """
    import pytest

    from mono_quant.conformance._pytest_support import raise_outcome

    expected = ExpectedFailures.from_mapping(
        expected_failed_checks or {}, source="parametrize_with_checks(expected_failed_checks=...)"
    )
    runner = Runner(profile=profile, expected=expected)
    planned = plan(resolve_subjects(schemes), all_checks())

    def bind(p: PlannedCheck) -> Any:
        def check() -> None:
            raise_outcome(runner.execute(p), stale="fail")

        check.__name__ = p.check.name
        return check

    return pytest.mark.parametrize("check", [bind(p) for p in planned], ids=[p.id for p in planned])
