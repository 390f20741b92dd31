"""``fp8`` against torchao's float8 primitives, bit for bit: fixed sweeps, built edge cases, hypothesis.

torchao's ``_choose_scale_float8`` is ``amax / max`` in the input's dtype with no
floor; passing our eps as its ``hp_value_lb`` (``amax`` clamped to ``eps * max``)
gives exactly our ``max(amax / max, eps)``. ``_quantize_affine_float8`` divides
in float32, clamps to ``±max`` and casts. Our default profile computes the scale
in float32, torchao's profile in the input's dtype, as torchao does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.differential import torchao_block_size
from mono_quant.core import (
    Granularity,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    dequantize,
    float_code_values,
    get_dtype,
    get_scheme,
    quantize,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    primitives = pytest.importorskip("torchao.quantization.quant_primitives")

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]
TORCH = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


def torchao_fp8(
    x: torch.Tensor, g: Granularity, dtype: str, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's scale, codes (as bytes) and dequantized values for ``x``."""
    fp8 = TORCH[dtype]
    x = x.contiguous()
    shape = tuple(x.shape)
    block = list(torchao_block_size(shape, g)) if x.dim() else []
    flat = bool(block) and all(b == 1 for b in block)
    if flat:
        # One element per granule: torchao's amax then reduces over every dim; two copies
        # of each element keep its own amax.
        x, block = x.reshape(-1, 1).expand(-1, 2).contiguous(), [1, 2]
    lb = eps * torch.finfo(fp8).max
    scale = primitives._choose_scale_float8(x, block, fp8, hp_value_lb=lb)
    codes = primitives._quantize_affine_float8(x, scale, fp8)
    values = primitives._dequantize_affine_float8(codes, scale, torch.float32)
    if flat:
        codes, values = codes[:, 0].reshape(shape), values[:, 0].reshape(shape)
    return scale, codes.view(torch.uint8), values


def check(x: torch.Tensor, g: Granularity, dtype: str, profile: str, bitexact: BitExact) -> int:
    """Assert bit equality with torchao; return the number of elements compared."""
    scheme = get_scheme("fp8", profile=profile)
    qp = scheme.compute_qparams(x, dtype, g)
    codes = quantize(x, qp)
    assert qp.scale is not None
    compute = scheme.profile.compute_dtype_for(x.dtype)
    eps = scheme.profile.eps_for(compute)
    ref_input = x if compute == x.dtype else x.to(compute)
    scale, ref_codes, ref_values = torchao_fp8(ref_input, g, dtype, eps)
    what = f"fp8 {dtype} {g} {profile} on {x.dtype} {tuple(x.shape)}"
    bitexact(qp.scale, scale, f"{what} scale")
    bitexact(codes.view(torch.uint8), ref_codes, f"{what} codes")
    bitexact(dequantize(codes, qp).view(torch.int32), ref_values.view(torch.int32), f"{what} values")
    return x.numel()


GRANULARITIES: list[tuple[tuple[int, ...], Granularity]] = [
    ((64, 96), PerTensor()),
    ((64, 96), PerChannel(0)),
    ((64, 96), PerChannel(1)),
    ((64, 96), PerGroup(-1, 32)),
    ((64, 96), PerGroup(0, 16)),
    ((3, 8, 20), PerChannel(1)),
    ((3, 8, 20), PerGroup(-1, 5)),
    ((7,), PerTensor()),
]


@pytest.mark.parametrize(("shape", "g"), GRANULARITIES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize(
    ("input_dtype", "profile"),
    [(torch.float32, "default"), (torch.bfloat16, "torchao"), (torch.float16, "torchao")],
)
def test_fixed_sweep_equals_torchao(
    shape: tuple[int, ...],
    g: Granularity,
    dtype: str,
    input_dtype: torch.dtype,
    profile: str,
    bitexact: BitExact,
) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    for magnitude in (1e-3, 1.0, 300.0):
        x = (torch.randn(shape, generator=gen) * magnitude).to(input_dtype)
        check(x, g, dtype, profile, bitexact)


def neighbour_ties(dtype: str) -> torch.Tensor:
    """Every midpoint between two FP8 neighbours (±), plus the max, so the scale is exactly 1."""
    values = float_code_values(get_dtype(dtype)).double()
    mids = (values[1:] + values[:-1]) / 2
    both = torch.cat([mids, -mids, values[-1:], torch.nextafter(mids.float(), torch.tensor(0.0)).double()])
    return both.float()


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_exact_ties_between_neighbours_round_to_even_as_torchao(dtype: str, bitexact: BitExact) -> None:
    x = neighbour_ties(dtype)
    qp = get_scheme("fp8").compute_qparams(x, dtype, PerTensor())
    assert qp.scale is not None and float(qp.scale) == 1.0  # every tie stays a tie after scaling
    codes = quantize(x, qp).view(torch.uint8)
    n = x.numel()
    assert check(x, PerTensor(), dtype, "default", bitexact) == n
    # Ties went to the even code: the mantissa's last bit is 0 for every exact midpoint.
    ties = (len(x) - 1) // 3 * 2
    assert not bool((codes[:ties] & 1).any())


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_target_format_subnormals_equal_torchao(dtype: str, bitexact: BitExact) -> None:
    values = float_code_values(get_dtype(dtype))
    normal_min = 2.0 ** (2 - 2 ** (3 if dtype == "float8_e4m3fn" else 4))  # 2**(1 - bias)
    sub = values[values < normal_min]
    assert sub.numel() == (8 if dtype == "float8_e4m3fn" else 4)  # 0 and the subnormals
    mids = (sub[1:] + sub[:-1]) / 2
    x = torch.cat([sub, mids, -mids, sub / 3, values[-1:]])  # max keeps the scale at 1
    codes = quantize(x, get_scheme("fp8").compute_qparams(x, dtype, PerTensor()))
    assert bool((codes.view(torch.uint8) & 0x7F)[: sub.numel()].eq(torch.arange(sub.numel())).all())
    check(x, PerTensor(), dtype, "default", bitexact)


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_values_beyond_max_saturate_as_torchao(dtype: str, bitexact: BitExact) -> None:
    limit = get_dtype(dtype).max_value
    assert limit is not None
    small = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    qp = get_scheme("fp8").compute_qparams(small, dtype, PerChannel(0))
    big = torch.tensor([[1e6, -1e30], [3.0e38, -5.0]])  # far beyond max * scale, and near float32's max
    codes = quantize(big, qp)
    back = codes.to(torch.float32)
    assert torch.equal(back.abs()[:, :1], torch.full((2, 1), limit))
    assert bool(torch.isfinite(back).all())  # E5M2 has inf, and saturation still never produces it
    assert qp.scale is not None
    ref = primitives._quantize_affine_float8(big, qp.scale.reshape(2, 1), TORCH[dtype])
    bitexact(codes.view(torch.uint8), ref.view(torch.uint8), f"{dtype} saturation")


@pytest.mark.parametrize("profile", ["default", "torchao"])
def test_zero_blocks_give_the_floor_scale_and_exact_zeros_as_torchao(
    profile: str, bitexact: BitExact
) -> None:
    x = torch.randn(6, 32)
    x[1] = 0.0
    x[4, 8:16] = 0.0
    for g in (PerChannel(0), PerGroup(-1, 8)):
        check(x, g, "float8_e4m3fn", profile, bitexact)
        qp = get_scheme("fp8", profile=profile).compute_qparams(x, "float8_e4m3fn", g)
        back = dequantize(quantize(x, qp), qp)
        assert bool((back[x == 0] == 0).all()) and bool(torch.isfinite(back).all())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_input_raise_where_torchao_writes_a_code(bad: float) -> None:
    x = torch.randn(4, 16)
    x[2, 5] = bad
    scale, codes, _ = torchao_fp8(x, PerChannel(0), "float8_e4m3fn", 2.0**-23)
    # torchao encodes it without a word: NaN (0x7F) or a saturated ±448 in a row whose scale is NaN/inf.
    assert not bool(torch.isfinite(scale).all()) or codes[2, 5] in (0x7F, 0xFF)
    with pytest.raises(NonFiniteError, match=r"holds 1 non-finite value\(s\).*at index \(2, 5\)"):
        get_scheme("fp8").compute_qparams(x, "float8_e4m3fn", PerChannel(0), name="w")
    good = get_scheme("fp8").compute_qparams(torch.ones(4, 16), "float8_e4m3fn", PerChannel(0))
    with pytest.raises(NonFiniteError):
        quantize(x, good)


@given(
    spec=mqst.tensor_specs(
        shapes=mqst.shapes(min_dims=1, max_dims=3, max_side=12),
        dtypes=mqst.float_dtypes(["float32", "bfloat16", "float16"]),
    ),
    dtype=st.sampled_from(["float8_e4m3fn", "float8_e5m2"]),
    data=st.data(),
)
def test_any_tensor_and_granularity_equals_torchao(
    spec: mqst.TensorSpec, dtype: str, data: st.DataObject, bitexact: BitExact
) -> None:
    x = spec.make()
    g = data.draw(mqst.granularities(tuple(x.shape)))
    profile = "default" if x.dtype == torch.float32 else "torchao"
    check(x, g, dtype, profile, bitexact)


def test_qparams_are_plain_data() -> None:
    qp = get_scheme("fp8").compute_qparams(torch.randn(4, 8))
    back = QParams.from_dict(qp.to_dict())
    assert back.equals(qp) and back.zero_point is not None and not bool(back.zero_point.any())
