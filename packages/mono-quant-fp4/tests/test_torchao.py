"""``mxfp4`` and ``nvfp4`` against torchao's ``prototype.mx_formats``, bit for bit.

MXFP4: ``to_mx(x, torch.float4_e2m1fn_x2, block)`` in ``FLOOR`` mode (the default
profile) and ``EVEN`` mode (the compressed-tensors profile's scale rule): E8M0
exponents and E2M1 codes. NVFP4: ``nvfp4_quantize(x, 16, per_tensor_amax_to_scale(amax))``:
E4M3 block scales and codes. torchao reduces along the last axis only; other axes
are compared on ``x.movedim(axis, -1)``.

Where torchao has no usable answer it is not an oracle, and the tests say so:
an MX block whose amax is below ``2**-124`` (torchao stores ``2**-127`` but divides
by ``2**-126``), and an NVFP4 tensor whose amax is below ``2688 * 2**-120``
(torchao overflows 1 / t / s: NaN codes).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.core import (
    NonFiniteError,
    PerGroup,
    QParams,
    dequantize,
    float_code_values,
    get_scheme,
    quantize,
)
from mono_quant.fp4 import MXFP4

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, unpack_uint4
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

FP4 = torch.float4_e2m1fn_x2
TINY_MX = 2.0**-124  # below it torchao's MX scale and divisor disagree


def mx_exponents(scale: torch.Tensor) -> torch.Tensor:
    """E8M0 bytes of power-of-two float32 scales (2**-127 is the subnormal 1 << 22)."""
    bits = scale.view(torch.int32)
    return torch.where(bits == 1 << 22, 0, bits >> 23).to(torch.uint8)


def ao_mx(x: torch.Tensor, axis: int, block: int, even: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torchao's E8M0 exponents and unpacked E2M1 codes, laid out like ours."""
    moved = x.movedim(axis, -1).contiguous()
    if moved.dtype not in (torch.float32, torch.bfloat16):
        moved = moved.float()  # exact; torchao takes float32 and bfloat16 only
    mode = ScaleCalculationMode.EVEN if even else ScaleCalculationMode.FLOOR
    scale, data = mx_tensor.to_mx(moved, FP4, block, scaling_mode=mode)
    codes = unpack_uint4(data.view(torch.uint8).contiguous())
    return scale.view(torch.uint8).movedim(-1, axis), codes.movedim(-1, axis)


def check_mx(x: torch.Tensor, axis: int, block: int, profile: str) -> tuple[int, int]:
    """Compare with torchao; return ``(elements compared, blocks left out as below 2**-124)``."""
    qp = get_scheme("mxfp4", profile=profile).compute_qparams(x, "mxfp4", PerGroup(axis, block))
    assert qp.scale is not None
    codes = quantize(x, qp)
    exps, ref = ao_mx(x, axis, block, even=profile == "compressed-tensors")
    a = axis % x.dim()
    amax = x.float().abs().movedim(a, -1).unflatten(-1, (-1, block)).amax(-1).movedim(-1, a)
    tiny = (amax > 0) & (amax < TINY_MX)
    what = f"mxfp4 {profile} block {block} axis {axis} on {x.dtype} {tuple(x.shape)}"
    bad = int(((mx_exponents(qp.scale) != exps) & ~tiny).sum())
    assert bad == 0, f"{what}: {bad} of {exps.numel()} E8M0 exponents differ"
    keep = ~tiny.repeat_interleave(block, dim=a)
    if profile == "compressed-tensors":
        ref = torch.where(x == 0, 0, ref).to(torch.uint8)  # compressed-tensors drops the sign of -0.0
    bad = int(((codes != ref) & keep).sum())
    assert bad == 0, f"{what}: {bad} of {codes.numel()} codes differ"
    return int(keep.sum()), int(tiny.sum())


SHAPES = [((16, 256), -1, 32), ((3, 4, 64), -1, 32), ((64, 48), 0, 32), ((8, 96), 1, 16)]


@pytest.mark.parametrize(("shape", "axis", "block"), SHAPES, ids=str)
@pytest.mark.parametrize(
    ("dtype", "profile"),
    [(dt, p) for dt in (torch.float32, torch.bfloat16, torch.float16) for p in ("default", "torchao")]
    # float16 under compressed-tensors rounds in float16 (test_compressed_tensors.py): not torchao's EVEN
    + [(torch.float32, "compressed-tensors"), (torch.bfloat16, "compressed-tensors")],
)
def test_mxfp4_fixed_sweep_equals_to_mx(
    shape: tuple[int, ...], axis: int, block: int, dtype: torch.dtype, profile: str
) -> None:
    gen = torch.Generator().manual_seed(len(shape))
    for magnitude in (1e-6, 0.02, 1.0, 1e4):
        x = (torch.randn(shape, generator=gen) * magnitude).to(dtype)
        assert check_mx(x, axis, block, profile)[1] == 0


def tie_block() -> torch.Tensor:
    """One block of 32: 6 (so the scale is 1), every E2M1 value and midpoint, and values up to 6.9.

    Below 7, so compressed-tensors' EVEN rounding of the block maximum keeps the scale at 1 too.
    """
    values = float_code_values(MXFP4)
    mids = (values[1:] + values[:-1]) / 2
    row = torch.cat([values, mids, torch.tensor([0.1, 0.3, 0.7, 5.5, 6.4, 6.5, 6.9])])
    row = torch.cat([row, -row[1:]])[:32]
    return torch.cat([row, torch.zeros(32 - row.numel())])


@pytest.mark.parametrize("profile", ["default", "compressed-tensors"])
def test_mxfp4_ties_subnormal_and_saturation_equal_to_mx(profile: str) -> None:
    x = torch.stack([tie_block(), tie_block() * 2.0**-20, tie_block() * 2.0**30, torch.zeros(32)])
    check_mx(x, -1, 32, profile)
    qp = get_scheme("mxfp4", profile=profile).compute_qparams(x)
    codes = quantize(x, qp)[0]
    values = dequantize(quantize(x, qp), qp)[0]
    assert qp.scale is not None and float(qp.scale[0, 0]) == 1.0
    row = tie_block()
    # Ties go to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4.
    for value, want in (
        (0.25, 0.0),
        (0.75, 1.0),
        (1.25, 1.0),
        (1.75, 2.0),
        (2.5, 2.0),
        (3.5, 4.0),
        (5.0, 4.0),
    ):
        i = int((row == value).nonzero()[0, 0])
        assert float(values[i]) == want, (value, float(values[i]))
    big = (row.abs() > 6).nonzero()[:, 0]
    assert bool((codes[big] & 7 == 7).all())  # beyond 6: saturated, never wrapped
    assert float(qp.scale[3, 0]) == 2.0**-127 and not bool(quantize(x, qp)[3].any())  # zero block


def test_mxfp4_blocks_below_2_pow_minus_124_are_where_torchao_disagrees_with_itself() -> None:
    x = torch.randn(2, 32) * 2.0**-127  # float32 subnormals
    qp = get_scheme("mxfp4").compute_qparams(x)
    exps, ref = ao_mx(x, -1, 32, even=False)
    assert qp.scale is not None and bool((mx_exponents(qp.scale) == exps).all())  # both store 2**-127
    ours = dequantize(quantize(x, qp), qp)
    theirs = f4_unpacked_to_f32(ref) * 2.0**-127  # torchao's own decode of what it stored
    assert float((ours - x).abs().max()) <= 2.0**-127  # within half a step of 2 * 2**-127
    assert float((theirs - x / 2).abs().max()) <= 2.0**-128  # torchao divided by 2**-126: half the value
    assert check_mx(x, -1, 32, "default")[1] == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_nan_and_inf_input_raise(scheme: str, bad: float) -> None:
    x = torch.randn(4, 64)
    x[3, 40] = bad
    with pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite value\(s\).*at index \(3, 40\)"):
        get_scheme(scheme).compute_qparams(x, name="w")
    qp = get_scheme(scheme).compute_qparams(torch.randn(4, 64))
    with pytest.raises(NonFiniteError):
        quantize(x, qp)


def ao_nvfp4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's tensor scale, E4M3 block scales and unpacked codes (last axis, blocks of 16)."""
    y = x if x.dtype in (torch.float32, torch.bfloat16) else x.float()
    tensor = per_tensor_amax_to_scale(y.abs().max())
    scale, data = nvfp4_quantize(y.contiguous(), 16, tensor)
    return tensor, scale, unpack_uint4(data.contiguous())


def check_nv(x: torch.Tensor) -> int:
    qp = get_scheme("nvfp4").compute_qparams(x, "nvfp4", PerGroup(-1, 16))
    assert qp.scale is not None and qp.tensor_scale is not None
    tensor, scale, ref = ao_nvfp4(x)
    what = f"nvfp4 on {x.dtype} {tuple(x.shape)}"
    assert qp.tensor_scale == float(tensor), what
    assert int((qp.scale.reshape(-1) != scale.float().reshape(-1)).sum()) == 0, f"{what}: block scales"
    codes = quantize(x, qp)
    assert int((codes.reshape(-1) != ref.reshape(-1)).sum()) == 0, f"{what}: codes"
    return x.numel()


@pytest.mark.parametrize("shape", [(16, 256), (3, 4, 64), (1, 16)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_nvfp4_fixed_sweep_equals_nvfp4_quantize(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(len(shape))
    for magnitude in (1e-6, 0.02, 1.0, 1e4):
        x = torch.randn(shape, generator=gen) * magnitude
        if x.numel() > 16:
            x.view(-1)[:16] *= 1e-3  # a block far below the tensor's amax: E4M3 subnormal scales
        check_nv(x.to(dtype))


def nv_ties(p_exp: int = -10) -> torch.Tensor:
    """Blocks whose scaled values are exactly E2M1 midpoints: tensor scale 2**p_exp, block scales 2**j."""
    p = 2.0**p_exp
    rows = [torch.full((16,), 2688 * p)]  # the tensor's amax: block scale 448
    for j in (-6, -2, 0, 3, 8):
        rows.append(tie_block()[:16] / 6.0 * 6.0 * (2.0**j) * p)
    return torch.stack(rows)


def test_nvfp4_ties_subnormal_scales_and_zero_blocks_equal_nvfp4_quantize() -> None:
    x = nv_ties()
    x[2] = 0.0
    check_nv(x)
    qp = get_scheme("nvfp4").compute_qparams(x)
    assert qp.scale is not None and float(qp.scale[0, 0]) == 448.0 and float(qp.scale[2, 0]) == 2.0**-6
    assert not bool(dequantize(quantize(x, qp), qp)[2].any())


def test_nvfp4_all_zero_tensor_is_finite_where_torchao_gives_nan() -> None:
    x = torch.zeros(2, 32)
    _, _, ref = ao_nvfp4(x)
    qp = get_scheme("nvfp4").compute_qparams(x)
    assert qp.tensor_scale == 2.0**-120
    assert torch.equal(dequantize(quantize(x, qp), qp), x)
    assert bool((ref != 0).any())  # torchao: 0/0 scales, NaN bit patterns (0x7 or 0xF)


@given(
    spec=mqst.tensor_specs(
        shapes=st.tuples(st.integers(1, 4), st.integers(1, 3)).map(lambda s: (s[0], s[1] * 32)),
        dtypes=mqst.float_dtypes(["float32", "bfloat16", "float16"]),
    ),
    profile=st.sampled_from(["default", "compressed-tensors"]),
    block=st.sampled_from([16, 32]),
)
def test_mxfp4_any_tensor_equals_to_mx(spec: mqst.TensorSpec, profile: str, block: int) -> None:
    x = spec.make()
    if profile == "compressed-tensors" and x.dtype == torch.float16:
        x = x.float()
    check_mx(x, -1, block, profile)


@given(
    spec=mqst.tensor_specs(
        shapes=st.tuples(st.integers(1, 4), st.integers(1, 4)).map(lambda s: (s[0], s[1] * 16)),
        dtypes=mqst.float_dtypes(["float32", "bfloat16"]),
    )
)
def test_nvfp4_any_tensor_equals_nvfp4_quantize(spec: mqst.TensorSpec) -> None:
    x = spec.make()
    if float(x.float().abs().max()) < 2688 * 2.0**-120:
        qp = get_scheme("nvfp4").compute_qparams(x)  # torchao is NaN here; ours stays exact and finite
        back = dequantize(quantize(x, qp), qp)
        assert bool(torch.isfinite(back).all()) and bool((back[x == 0] == 0).all())
        return
    check_nv(x)


def test_qparams_carry_the_tensor_scale_through_their_dict_form() -> None:
    x = torch.randn(4, 64)
    qp = get_scheme("nvfp4").compute_qparams(x)
    back = QParams.from_dict(qp.to_dict())
    assert back.equals(qp) and back.tensor_scale == qp.tensor_scale
    assert torch.equal(dequantize(quantize(x, qp), back), dequantize(quantize(x, qp), qp))
