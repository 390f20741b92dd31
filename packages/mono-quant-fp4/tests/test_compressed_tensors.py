"""``mxfp4`` and ``nvfp4`` under the compressed-tensors profile against compressed-tensors, bit for bit.

Scales from its ``calculate_qparams`` (``generate_gparam`` for NVFP4's global
scale), E2M1 values from its ``quantize`` packed by its ``pack_fp4_to_uint8``,
and the compressors' own ``compress`` (``weight_packed``, ``weight_scale``,
``weight_global_scale``) for the ``NVFP4A16``/``MXFP4A16`` preset args, on float32,
bfloat16 and float16 weights.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import PerGroup, dequantize, float_code_values, get_scheme, quantize
from mono_quant.fp4 import MXFP4

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ct_quant = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.compressors import MXFP4PackedCompressor, NVFP4PackedCompressor
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.quant_scheme import MXFP4A16, NVFP4A16
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

PRESETS = {"nvfp4": (NVFP4A16, NVFP4PackedCompressor, 16), "mxfp4": (MXFP4A16, MXFP4PackedCompressor, 32)}


def check(x: torch.Tensor, name: str) -> None:
    preset, compressor, block = PRESETS[name]
    args = preset["weights"]
    view = x.unflatten(-1, (x.shape[-1] // block, block))
    g = generate_gparam(x.amin(), x.amax()) if name == "nvfp4" else None
    scale, zp = calculate_qparams(view.amin(-1), view.amax(-1), args, global_scale=g)
    ref = pack_fp4_to_uint8(ct_quantize(x, scale, zp, args, global_scale=g))
    qp = get_scheme(name, profile="compressed-tensors").compute_qparams(x, name, PerGroup(-1, block))
    assert qp.scale is not None
    what = f"{name} on {x.dtype} {tuple(x.shape)}"
    assert int((qp.scale != scale.float()).sum()) == 0, f"{what}: scales"
    if g is not None:
        assert qp.tensor_scale == float(g), f"{what}: global scale"
    packed = quantize(x, qp, pack=True)
    assert int((packed != ref).sum()) == 0, f"{what}: {int((packed != ref).sum())} packed bytes differ"
    state = {"weight": x, "weight_scale": scale, "weight_zero_point": zp}
    if g is not None:
        state["weight_global_scale"] = g
    scheme = ct_quant.QuantizationScheme(targets=["Linear"], weights=args)
    stored = compressor.compress(state, scheme)
    assert torch.equal(stored["weight_packed"], packed), what
    # Its reader gives bfloat16 (unpack_fp4_from_uint8's dtype): our values, rounded once to bfloat16.
    theirs = compressor.decompress(dict(stored), scheme)["weight"]
    ours = dequantize(packed, qp, shape=tuple(x.shape), dtype=torch.bfloat16)
    assert theirs.dtype == torch.bfloat16 and torch.equal(ours.view(torch.int16), theirs.view(torch.int16)), (
        what
    )


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fixed_sweep_equals_compressed_tensors(name: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    for rows, cols in ((16, 256), (3, 64), (1, 32)):
        for magnitude in (1e-5, 0.02, 1.0, 1e3):
            x = torch.randn(rows, cols, generator=gen) * magnitude
            x[0, :16] *= 1e-3  # a block far below the tensor's amax
            check(x.to(dtype), name)


def ties() -> torch.Tensor:
    """Every E2M1 value and midpoint, scaled so that both formats' scales are powers of two."""
    values = float_code_values(MXFP4)
    row = torch.cat([values, (values[1:] + values[:-1]) / 2, torch.tensor([0.1, 0.3, 6.4, 6.9])])
    row = torch.cat([row, -row[1:]])[:32]
    row = torch.cat([row, torch.zeros(32 - row.numel())])
    row[0] = 6.0
    blocks = [row * 2.0**j for j in (-8, -3, 0, 4)] + [torch.zeros(32)]
    return torch.stack(blocks) * (2688 / 6.0 * 2.0**-10)


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_ties_saturation_and_zero_blocks_equal_compressed_tensors(name: str) -> None:
    check(ties(), name)


@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_an_all_zero_weight_equals_compressed_tensors(name: str) -> None:
    check(torch.zeros(2, 64), name)
    qp = get_scheme(name, profile="compressed-tensors").compute_qparams(torch.zeros(2, 64))
    assert qp.scale is not None and bool(torch.isfinite(qp.scale).all()) and bool((qp.scale > 0).all())


@given(
    rows=st.integers(1, 4),
    blocks=st.integers(1, 3),
    name=st.sampled_from(["nvfp4", "mxfp4"]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([1e-6, 1e-3, 0.05, 1.0, 300.0]),
    zero_block=st.booleans(),
    negative_zero=st.booleans(),
)
def test_any_weight_equals_compressed_tensors(
    rows: int,
    blocks: int,
    name: str,
    dtype: torch.dtype,
    seed: int,
    magnitude: float,
    zero_block: bool,
    negative_zero: bool,
) -> None:
    x = torch.randn(rows, blocks * 32, generator=torch.Generator().manual_seed(seed)) * magnitude
    if zero_block:
        x[0, :16] = 0.0
    if negative_zero:
        x[-1, -3:] = -0.0
    check(x.to(dtype), name)
