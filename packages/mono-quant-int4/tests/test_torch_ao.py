"""The int4 schemes against torch.ao's observers with an explicit 4-bit range.

torch.ao has no 4-bit dtype; its observers take ``quant_min``/``quant_max`` on an
8-bit dtype instead (-8..7 on qint8, 0..15 on quint8). Scale and zero-point equal
ours bit for bit, except one documented convention: for a *symmetric* scheme on an
*unsigned* dtype, torch.ao's custom-range rule rounds the midpoint down,
``(0 + 15) // 2 = 7``, where torchao and our default round it up to 8. The profile
parameter ``unsigned_symmetric_zero_point="midpoint_down"`` reproduces torch.ao.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.differential import torch_ao_reference
from mono_quant.core import Granularity, PerChannel, PerTensor, get_scheme

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

#: Our 4-bit dtype -> the 8-bit observer dtype and the range torch.ao narrows it to.
RANGES = {"int4": ("int8", (-8, 7)), "uint4": ("uint8", (0, 15))}


def observer_qparams(
    x: torch.Tensor, name: str, dtype: str, granularity: Granularity
) -> tuple[torch.Tensor, ...]:
    ao_dtype, quant_range = RANGES[dtype]
    symmetric = get_scheme(name).capabilities.symmetric
    return torch_ao_reference(x, ao_dtype, granularity, symmetric, quant_range)[:2]


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, torch.Tensor, Granularity, str]:
    x = draw(mqst.tensors(), label="x")
    granularity = draw(mqst.granularities(tuple(x.shape), kinds=("per_tensor", "per_channel")))
    return (
        draw(st.sampled_from(["int4-symmetric", "int4-asymmetric"])),
        x,
        granularity,
        draw(st.sampled_from(["int4", "uint4"])),
    )


@given(case=cases())
def test_scale_and_zero_point_equal_torch_ao_with_a_4_bit_range(
    case: tuple[str, torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    name, x, granularity, dtype = case
    torch_ao_rule = name == "int4-symmetric" and dtype == "uint4"
    scheme = (
        get_scheme(name, unsigned_symmetric_zero_point="midpoint_down") if torch_ao_rule else get_scheme(name)
    )
    qp = scheme.compute_qparams(x, dtype, granularity)
    scale, zero_point = observer_qparams(x, name, dtype, granularity)
    assert qp.scale is not None and qp.zero_point is not None
    what = f"{scheme.profile.name} {name} {dtype} {granularity} {x.dtype}"
    bitexact(qp.scale, scale, "scale " + what)
    bitexact(qp.zero_point, zero_point, "zero_point " + what)


def test_uint4_symmetric_default_rounds_the_midpoint_up_where_torch_ao_rounds_down() -> None:
    x = mqst.make_tensor((3, 16), seed=9)
    for granularity in (PerTensor(), PerChannel(0)):
        ours = get_scheme("int4-symmetric").compute_qparams(x, "uint4", granularity)
        _, zero_point = observer_qparams(x, "int4-symmetric", "uint4", granularity)
        assert ours.zero_point is not None
        assert set(ours.zero_point.flatten().tolist()) == {8}
        assert set(zero_point.flatten().tolist()) == {7}
