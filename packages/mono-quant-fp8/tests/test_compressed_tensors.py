"""``fp8`` under the compressed-tensors profile against compressed-tensors' own functions, bit for bit.

For ``QuantizationArgs(type="float", num_bits=8, symmetric=True)`` compressed-tensors
computes ``scale = amax / 448`` in the weight's dtype (a zero scale becomes that
dtype's machine epsilon) and quantizes with ``x / scale`` in that dtype, clamped
and cast to ``float8_e4m3fn``. Strategies: ``tensor`` (our per-tensor), ``channel``
(per-channel along axis 0), ``group`` (per-group along the last axis) and ``block``
with ``block_structure=[1, g]``, the 1-D block that is a group (a 2-D ``[128, 128]``
tile has no mono-quant granularity). compressed-tensors knows no E5M2; torchao is
its oracle (``test_torchao.py``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import (
    Granularity,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    dequantize,
    float_code_values,
    get_dtype,
    get_scheme,
    quantize,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ct_quant = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.quantization.lifecycle.forward import dequantize as ct_dequantize
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.utils import calculate_qparams

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]


def ct_reference(
    x: torch.Tensor, strategy: str, gs: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """compressed-tensors' scale, codes and dequantized values (float32 scale) for 2-D ``x``."""
    kwargs: dict[str, object] = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": strategy}
    if strategy == "group":
        kwargs["group_size"] = gs
    if strategy == "block":
        kwargs["block_structure"] = [1, gs]
    args = ct_quant.QuantizationArgs(**kwargs)
    if strategy in ("group", "block"):
        assert gs is not None
        view = x.unflatten(-1, (x.shape[-1] // gs, gs))
        lo, hi = view.amin(-1), view.amax(-1)
    elif strategy == "channel":
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    else:
        lo, hi = x.amin(), x.amax()
    scale, zp = calculate_qparams(lo, hi, args)
    codes = ct_quantize(x, scale, zp, args, dtype=torch.float8_e4m3fn)
    values = ct_dequantize(codes, scale.float(), None, args, dtype=torch.float32)
    return scale, codes, values


STRATEGIES: dict[str, Callable[[int], Granularity]] = {
    "tensor": lambda gs: PerTensor(),
    "channel": lambda gs: PerChannel(0),
    "group": lambda gs: PerGroup(-1, gs),
    "block": lambda gs: PerGroup(-1, gs),
}


def check(x: torch.Tensor, strategy: str, gs: int, bitexact: BitExact) -> None:
    scheme = get_scheme("fp8", profile="compressed-tensors")
    qp = scheme.compute_qparams(x, "float8_e4m3fn", STRATEGIES[strategy](gs))
    codes = quantize(x, qp)
    scale, ref_codes, ref_values = ct_reference(x, strategy, gs)
    what = f"fp8 compressed-tensors {strategy} (group {gs}) on {x.dtype} {tuple(x.shape)}"
    assert qp.scale is not None
    bitexact(qp.scale, scale.float(), f"{what} scale")
    bitexact(codes.view(torch.uint8), ref_codes.view(torch.uint8), f"{what} codes")
    bitexact(dequantize(codes, qp).view(torch.int32), ref_values.view(torch.int32), f"{what} values")


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fixed_sweep_equals_compressed_tensors(strategy: str, dtype: torch.dtype, bitexact: BitExact) -> None:
    gen = torch.Generator().manual_seed(7)
    for rows, cols, gs in ((16, 64, 16), (5, 96, 32), (1, 128, 128)):
        for magnitude in (1e-3, 1.0, 300.0):
            x = (torch.randn(rows, cols, generator=gen) * magnitude).to(dtype)
            check(x, strategy, gs, bitexact)


def test_ties_subnormals_and_zero_rows_equal_compressed_tensors(bitexact: BitExact) -> None:
    values = float_code_values(get_dtype("float8_e4m3fn")).double()
    mids = ((values[1:] + values[:-1]) / 2).float()
    row = torch.cat([mids, -mids, values[-1:].float()])  # max 448: the scale is exactly 1
    row = torch.cat([row, torch.zeros(256 - row.numel())])
    x = torch.stack([row, torch.zeros(256), row * 2.0**-10, row.flip(0)])
    for strategy in ("tensor", "channel", "group"):
        check(x, strategy, 64, bitexact)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_and_inf_raise(bad: float) -> None:
    x = torch.randn(4, 32)
    x[1, 3] = bad
    with pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite value"):
        get_scheme("fp8", profile="compressed-tensors").compute_qparams(x, name="w")


@given(
    rows=st.integers(1, 6),
    groups=st.integers(1, 4),
    strategy=st.sampled_from(list(STRATEGIES)),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([1e-4, 0.02, 1.0, 50.0]),
    zero_row=st.booleans(),
)
def test_any_weight_equals_compressed_tensors(
    rows: int,
    groups: int,
    strategy: str,
    dtype: torch.dtype,
    seed: int,
    magnitude: float,
    zero_row: bool,
    bitexact: BitExact,
) -> None:
    x = torch.randn(rows, groups * 16, generator=torch.Generator().manual_seed(seed)) * magnitude
    if zero_row:
        x[0] = 0.0
    check(x.to(dtype), strategy, 16, bitexact)
