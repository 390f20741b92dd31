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
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from mono_quant.conformance import strategies as mqst
from mono_quant.core import Granularity, PerChannel, PerTensor, get_scheme

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

RANGES = {"int4": (torch.qint8, -8, 7), "uint4": (torch.quint8, 0, 15)}
QSCHEMES = {
    ("int4-symmetric", "per_tensor"): torch.per_tensor_symmetric,
    ("int4-symmetric", "per_channel"): torch.per_channel_symmetric,
    ("int4-asymmetric", "per_tensor"): torch.per_tensor_affine,
    ("int4-asymmetric", "per_channel"): torch.per_channel_affine,
}


def observer_qparams(
    x: torch.Tensor, name: str, dtype: str, granularity: Granularity
) -> tuple[torch.Tensor, ...]:
    ao_dtype, qmin, qmax = RANGES[dtype]
    qscheme = QSCHEMES[(name, granularity.kind)]
    x = x.float()
    if isinstance(granularity, PerChannel):
        axis = granularity.axis % x.dim()
        obs: MinMaxObserver = PerChannelMinMaxObserver(
            ch_axis=axis, dtype=ao_dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax
        )
        if x.dim() == 1:  # the observer needs a dimension to reduce over; a 1-wide one is neutral
            x = x.unsqueeze(1)
    else:
        obs = MinMaxObserver(dtype=ao_dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax)
    obs(x)
    return tuple(obs.calculate_qparams())


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
