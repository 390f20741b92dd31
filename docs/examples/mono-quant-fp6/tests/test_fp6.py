"""Tests of mono-quant-fp6: the format's values, nearest-value rounding and the scale, against own oracles.

The conformance suite checks what every float code scheme shares; these tests
check FP6 E3M2 itself, enumerating the format from its definition.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import PerTensor, dequantize, float_code_values, get_dtype, get_scheme, quantize
from mono_quant.fp6 import FP6_E3M2, Fp6Scheme


def e3m2_values() -> list[float]:
    """Every non-negative E3M2 value by definition: subnormals m/4 * 2**-2, normals (1 + m/4) * 2**(e-3)."""
    subnormal = [m / 4 * 2.0**-2 for m in range(4)]
    normal = [(1 + m / 4) * 2.0 ** (e - 3) for e in range(1, 8) for m in range(4)]
    return subnormal + normal


def test_the_format_has_the_values_its_definition_gives() -> None:
    assert get_dtype("fp6_e3m2") == FP6_E3M2
    assert float_code_values(FP6_E3M2).tolist() == e3m2_values()
    assert max(e3m2_values()) == FP6_E3M2.max_value == 28.0


def nearest(y: float) -> float:
    """The E3M2 value nearest ``y`` (ties to the even code), saturating at ±28: a search, no formula."""
    values = e3m2_values()
    a = min(abs(y), 28.0)
    best = min(range(len(values)), key=lambda i: (abs(values[i] - a), i % 2))
    return values[best] if y >= 0 else -values[best]


@given(st.lists(st.floats(-28.0, 28.0, width=32), min_size=2, max_size=40))
def test_codes_are_the_nearest_value_ties_to_even(xs: list[float]) -> None:
    x = torch.tensor(xs + [28.0])  # the max keeps the scale at exactly 1
    qp = get_scheme("fp6").compute_qparams(x, "fp6_e3m2", PerTensor())
    assert qp.scale is not None and float(qp.scale) == 1.0
    got = dequantize(quantize(x, qp), qp).tolist()
    assert got == [nearest(v) for v in x.tolist()]


def test_ties_between_neighbours_go_to_the_even_code() -> None:
    x = torch.tensor([28.0, 0.03125, 0.09375, 1.125, 1.375, 26.0, -26.0])
    qp = Fp6Scheme().compute_qparams(x, "fp6_e3m2", PerTensor())
    assert dequantize(quantize(x, qp), qp).tolist() == [28.0, 0.0, 0.125, 1.0, 1.5, 24.0, -24.0]
    beyond = torch.tensor([40.0, -1e30])  # with the qparams of x: saturated, never wrapped
    assert dequantize(quantize(beyond, qp), qp).tolist() == [28.0, -28.0]


def test_the_default_is_one_scale_per_group_of_32_and_codes_fit_6_bits() -> None:
    w = torch.randn(4, 64)
    qp = get_scheme("fp6").compute_qparams(w)
    assert qp.scale is not None and qp.scale.shape == (4, 2)
    assert torch.allclose(qp.scale, w.abs().reshape(4, 2, 32).amax(-1) / 28)
    codes = quantize(w, qp)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 64


def test_an_inconsistent_format_is_refused_by_core() -> None:
    with pytest.raises(ValueError, match=r"max_value must be the format's largest finite value 28\.0"):
        type(FP6_E3M2)(**{**FP6_E3M2.to_dict(), "max_value": 30.0})
