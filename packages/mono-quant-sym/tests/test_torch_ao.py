"""The default profile of ``symmetric`` equals torch.ao bit for bit.

The shared checks are :class:`~mono_quant.conformance.differential.ObserverSuite` (oracle:
:func:`~mono_quant.conformance.differential.torch_ao_reference`); below, custom ranges."""

from __future__ import annotations

import pytest

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.differential import ObserverSuite, assert_bitexact, torch_ao_reference
from mono_quant.core import PerChannel, PerTensor, QuantDtype, get_scheme

SCHEME = get_scheme("symmetric")


class TestObservers(ObserverSuite):
    schemes = ("symmetric",)


@pytest.mark.parametrize(
    ("dtype", "quant_range"), [("uint8", (0, 255)), ("uint8", (0, 15)), ("int8", (-8, 7))]
)
def test_midpoint_down_profile_equals_torch_ao_with_a_custom_range(
    dtype: str, quant_range: tuple[int, int]
) -> None:
    """With an explicit quant range torch.ao rounds the unsigned midpoint *down*
    ((qmin + qmax) // 2: 127 for 0..255); ``unsigned_symmetric_zero_point`` reproduces it."""
    qmin, qmax = quant_range
    target = QuantDtype(f"test{qmin}_{qmax}", 8, qmin < 0, qmin, qmax, "int8" if qmin < 0 else "uint8")
    scheme = SCHEME.configure(unsigned_symmetric_zero_point="midpoint_down")
    assert scheme.profile.name == "custom"
    x = mqst.make_tensor((6, 10), kind="uniform", seed=3)
    for granularity in (PerTensor(), PerChannel(0), PerChannel(-1)):
        qp = scheme.compute_qparams(x, target, granularity)
        scale, zero_point, _ = torch_ao_reference(x, dtype, granularity, True, quant_range)
        assert qp.scale is not None and qp.zero_point is not None
        assert_bitexact(qp.scale, scale, f"scale {quant_range} {granularity}")
        assert_bitexact(qp.zero_point, zero_point, f"zero_point {quant_range} {granularity}")
    if qmin == 0:
        default = SCHEME.compute_qparams(x, target, PerTensor())
        assert default.zero_point is not None
        assert int(default.zero_point) == (qmin + qmax + 1) // 2  # the default rounds up, like torchao
