"""The default profile of ``asymmetric`` equals torch.ao bit for bit.

Oracle for scale and zero-point: ``MinMaxObserver(qscheme=per_tensor_affine)`` and
``PerChannelMinMaxObserver(qscheme=per_channel_affine)`` with their default
ranges and eps (float32 eps); for codes: PyTorch's decomposed reference ops
(``quantized_decomposed.quantize_per_tensor`` / ``quantize_per_channel``, which round
before adding the zero-point). All run on ``x.float()``: our default profile casts to
float32 first, whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.ao.quantization.fx._decomposed  # registers torch.ops.quantized_decomposed
from hypothesis import given
from hypothesis import strategies as st
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from mono_quant.conformance import strategies as mqst
from mono_quant.core import Granularity, PerChannel, PerTensor, QuantDtype, get_scheme

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

SCHEME = get_scheme("asymmetric")
OBSERVER_DTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
SWEEP_SHAPES = [(7,), (5, 6), (3, 4, 5), (2, 3, 4, 5)]


def torch_ao_reference(
    x: torch.Tensor,
    dtype: str,
    granularity: Granularity,
    quant_range: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.ao's scale, zero-point and codes for ``x.float()`` (a fresh observer per call)."""
    qmin, qmax = quant_range if quant_range is not None else (None, None)
    x = x.float()
    observed = x
    if isinstance(granularity, PerTensor):
        obs: MinMaxObserver = MinMaxObserver(
            dtype=OBSERVER_DTYPES[dtype], qscheme=torch.per_tensor_affine, quant_min=qmin, quant_max=qmax
        )
    else:
        assert isinstance(granularity, PerChannel)
        axis = granularity.axis % x.dim()
        if x.dim() == 1:
            # The observer needs a dimension to reduce over; a 1-wide one is neutral.
            observed = x.unsqueeze(1)
        obs = PerChannelMinMaxObserver(
            ch_axis=axis,
            dtype=OBSERVER_DTYPES[dtype],
            qscheme=torch.per_channel_affine,
            quant_min=qmin,
            quant_max=qmax,
        )
    obs(observed)
    scale, zero_point = obs.calculate_qparams()
    lo, hi = (obs.quant_min, obs.quant_max)
    code_dtype = torch.int8 if dtype == "int8" else torch.uint8
    ops = torch.ops.quantized_decomposed
    if isinstance(granularity, PerTensor):
        codes = ops.quantize_per_tensor(x, float(scale), int(zero_point), lo, hi, code_dtype)
    else:
        codes = ops.quantize_per_channel(x, scale, zero_point, axis, lo, hi, code_dtype)
    return scale, zero_point, codes


@st.composite
def observer_cases(draw: st.DrawFn) -> tuple[torch.Tensor, Granularity, str]:
    x = draw(mqst.tensors(), label="x")
    granularity = draw(mqst.granularities(tuple(x.shape), kinds=("per_tensor", "per_channel")))
    dtype = draw(mqst.quant_dtypes(names=list(OBSERVER_DTYPES)))
    return x, granularity, dtype.name


@given(case=observer_cases())
def test_scale_and_zero_point_equal_torch_ao_observers(
    case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    qp = SCHEME.compute_qparams(x, dtype, granularity)
    scale, zero_point, codes = torch_ao_reference(x, dtype, granularity)
    assert qp.scale is not None and qp.zero_point is not None
    bitexact(qp.scale, scale, f"scale {dtype} {granularity} {x.dtype}")
    bitexact(qp.zero_point, zero_point, f"zero_point {dtype} {granularity} {x.dtype}")
    bitexact(SCHEME.quantize(x, qp), codes, f"codes {dtype} {granularity} {x.dtype}")


@pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
@pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
def test_every_element_kind_and_float_dtype_equals_torch_ao(
    kind_index: int, float_index: int, bitexact: BitExact
) -> None:
    """A fixed sweep, so every edge case runs whatever hypothesis draws: each element kind
    with each input dtype, on a shape rotating through 1-D..4-D, every axis (both signs),
    contiguous or a strided view."""
    kind = mqst.ELEMENT_KINDS[kind_index]
    float_dtype = list(mqst.FLOAT_DTYPES.values())[float_index]
    shape = SWEEP_SHAPES[(kind_index + float_index) % len(SWEEP_SHAPES)]
    x = mqst.make_tensor(shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1)
    grans: list[Granularity] = [PerTensor(), *(PerChannel(a) for a in range(-len(shape), len(shape)))]
    for granularity in grans:
        for dtype in OBSERVER_DTYPES:
            qp = SCHEME.compute_qparams(x, dtype, granularity)
            scale, zero_point, codes = torch_ao_reference(x, dtype, granularity)
            assert qp.scale is not None and qp.zero_point is not None
            what = f"{kind} {float_dtype} {shape} {dtype} {granularity}"
            bitexact(qp.scale, scale, "scale " + what)
            bitexact(qp.zero_point, zero_point, "zero_point " + what)
            bitexact(SCHEME.quantize(x, qp), codes, "codes " + what)


@pytest.mark.parametrize(
    ("dtype", "quant_range"),
    [("uint8", (0, 255)), ("uint8", (0, 15)), ("int8", (-8, 7)), ("int8", (-127, 127))],
)
def test_custom_quant_ranges_equal_torch_ao(
    dtype: str, quant_range: tuple[int, int], bitexact: BitExact
) -> None:
    """torch.ao's observers with an explicit range (how it expresses int4/uint4 or a
    narrow int8) use the same affine formula; our dtypes with those ranges match."""
    qmin, qmax = quant_range
    target = QuantDtype(f"test{qmin}_{qmax}", 8, qmin < 0, qmin, qmax, "int8" if qmin < 0 else "uint8")
    for kind in ("uniform", "positive", "negative", "zeros"):
        x = mqst.make_tensor((6, 10), kind=kind, seed=3)
        for granularity in (PerTensor(), PerChannel(0), PerChannel(-1)):
            qp = SCHEME.compute_qparams(x, target, granularity)
            scale, zero_point, _ = torch_ao_reference(x, dtype, granularity, quant_range)
            assert qp.scale is not None and qp.zero_point is not None
            what = f"{kind} {quant_range} {granularity}"
            bitexact(qp.scale, scale, "scale " + what)
            bitexact(qp.zero_point, zero_point, "zero_point " + what)
