"""Every observer of this distribution passes the observer conformance checks."""

from __future__ import annotations

from collections.abc import Callable

from mono_quant.conformance.observers import parametrize_with_checks


@parametrize_with_checks(["mono-quant-observers"])
def test_observer_conformance(check: Callable[[], None]) -> None:
    check()
