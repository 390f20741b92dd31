"""Turning a :class:`CheckResult` into pytest's outcomes (pass, fail, skip, xfail)."""

from __future__ import annotations

import warnings

import pytest

from mono_quant.conformance._results import CheckResult

__all__ = ["ConformanceWarning", "StaleExpectedFailure", "raise_outcome"]


class ConformanceWarning(UserWarning):
    """A stale expected failure under ``--mono-quant-stale=warn``."""


class StaleExpectedFailure(AssertionError):
    """A declared expected failure passed: the declaration is out of date."""


def raise_outcome(result: CheckResult, *, stale: str) -> None:
    """Raise what pytest needs to report ``result`` (return normally for a pass)."""
    if result.status == "skipped":
        pytest.skip(result.reason)
    if result.status == "xfail":
        first = result.message.splitlines()[0] if result.message else ""
        pytest.xfail(f"{result.reason} -- {first}" if first else result.reason)
    if result.status == "stale":
        if stale == "warn":
            warnings.warn(ConformanceWarning(result.reason), stacklevel=2)
            return
        raise StaleExpectedFailure(result.reason)
    if result.status == "failed":
        assert result.exception is not None
        raise result.exception
