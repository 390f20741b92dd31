"""Shared fixtures: a scheme defined here (core ships none) and the hypothesis profile."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from mono_quant.core import (
    Capabilities,
    MinMaxScheme,
    QuantDtype,
    Scheme,
    asymmetric_qparams,
    symmetric_qparams,
)

# tests/plugins/ holds distributions that test_plugins.py installs, not test modules.
collect_ignore = ["plugins"]

settings.register_profile("mono-quant-ci", derandomize=True, max_examples=25, deadline=None)
settings.register_profile("mono-quant-dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))


class AsymForTests(MinMaxScheme):
    """An unregistered asymmetric scheme over core's formula, for core's own tests."""

    name = "core-test-asym"
    version = "0"
    capabilities = Capabilities(profiles=("default", "torchao", "custom"))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


class SymForTests(AsymForTests):
    name = "core-test-sym"
    capabilities = Capabilities(symmetric=True, nondivisible=("raise",))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return symmetric_qparams(lo, hi, dtype, self.profile)


@pytest.fixture
def asym() -> Scheme:
    return AsymForTests()


@pytest.fixture
def sym() -> Scheme:
    return SymForTests()
