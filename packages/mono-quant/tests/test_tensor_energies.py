"""SQNR energies of one tensor: float32 sums where they hold, float64 where float32 under- or overflows."""

from __future__ import annotations

import math

import pytest
import torch

from mono_quant.cli._tensor import quantize_tensor, sqnr_db
from mono_quant.core import PerChannel, get_dtype, get_scheme


def _energies(x, scheme="asymmetric"):
    _, signal, noise = quantize_tensor(x, get_scheme(scheme), get_dtype("int8"), PerChannel(0), name="w")
    return signal, noise


def _float64_reference(x, scheme="asymmetric"):
    qt, _, _ = quantize_tensor(x, get_scheme(scheme), get_dtype("int8"), PerChannel(0), name="w")
    xd = x.double()
    return float((xd**2).sum()), float(((qt.dequantize(torch.float32).double() - xd) ** 2).sum())


def test_subnormal_values_that_all_come_back_zero_report_0_db_not_inf():
    x = torch.full((4, 8), 1e-40)  # float32 subnormals: squares underflow to 0 in float32
    signal, noise = _energies(x)
    assert signal > 0 and noise == pytest.approx(signal)
    assert sqnr_db(signal, noise) == pytest.approx(0.0)


@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e38])
def test_huge_finite_values_quantize_and_report_a_finite_sqnr(magnitude):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, generator=g) * (magnitude * 0.25)  # squares overflow float32
    signal, noise = _energies(x)
    assert math.isfinite(signal) and math.isfinite(noise)
    ref = _float64_reference(x)
    assert signal == pytest.approx(ref[0], rel=1e-9) and noise == pytest.approx(ref[1], rel=1e-9)
    assert 35 < sqnr_db(signal, noise) < 60


def test_ordinary_values_keep_the_fused_float32_energies():
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    signal, noise = _energies(x)
    ref = _float64_reference(x)
    assert signal == pytest.approx(ref[0], rel=1e-4) and noise == pytest.approx(ref[1], rel=1e-4)


def test_an_all_zero_tensor_is_an_exact_reconstruction():
    signal, noise = _energies(torch.zeros(4, 8))
    assert (signal, noise) == (0.0, 0.0) and sqnr_db(signal, noise) == math.inf
