"""The default profile of ``asymmetric`` equals torch.ao bit for bit.

The shared checks are :class:`~mono_quant.conformance.differential.ObserverSuite` (oracle:
:func:`~mono_quant.conformance.differential.torch_ao_reference`); below, custom ranges."""

from __future__ import annotations

import pytest

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.differential import ObserverSuite, assert_bitexact, torch_ao_reference
from mono_quant.core import PerChannel, PerTensor, QuantDtype, get_scheme

SCHEME = get_scheme("asymmetric")


class TestObservers(ObserverSuite):
    schemes = ("asymmetric",)


@pytest.mark.parametrize(
    ("dtype", "quant_range"),
    [("uint8", (0, 255)), ("uint8", (0, 15)), ("int8", (-8, 7)), ("int8", (-127, 127))],
)
def test_custom_quant_ranges_equal_torch_ao(dtype: str, quant_range: tuple[int, int]) -> None:
    """torch.ao's observers with an explicit range (how it expresses int4/uint4 or a
    narrow int8) use the same affine formula; our dtypes with those ranges match."""
    qmin, qmax = quant_range
    target = QuantDtype(f"test{qmin}_{qmax}", 8, qmin < 0, qmin, qmax, "int8" if qmin < 0 else "uint8")
    for kind in ("uniform", "positive", "negative", "zeros"):
        x = mqst.make_tensor((6, 10), kind=kind, seed=3)
        for granularity in (PerTensor(), PerChannel(0), PerChannel(-1)):
            qp = SCHEME.compute_qparams(x, target, granularity)
            scale, zero_point, _ = torch_ao_reference(x, dtype, granularity, False, quant_range)
            assert qp.scale is not None and qp.zero_point is not None
            what = f"{kind} {quant_range} {granularity}"
            assert_bitexact(qp.scale, scale, "scale " + what)
            assert_bitexact(qp.zero_point, zero_point, "zero_point " + what)
