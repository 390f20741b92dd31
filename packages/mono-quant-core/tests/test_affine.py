"""The affine formulas and ops: conventions of DESIGN.md's math section, edge cases."""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import (
    DEFAULT_PROFILE,
    TORCHAO_PROFILE,
    NonFiniteError,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    Profile,
    QParams,
    QParamsError,
    QuantDtype,
    Scheme,
    asymmetric_qparams,
    dequantize,
    get_dtype,
    quantize,
    symmetric_qparams,
)

EPS = torch.finfo(torch.float32).eps
T = torch.tensor


def test_symmetric_scale_uses_half_the_code_span() -> None:
    scale, zp = symmetric_qparams(T([-3.0]), T([1.0]), get_dtype("int8"), DEFAULT_PROFILE)
    assert scale.item() == T(3.0 / 127.5).item()  # float32 arithmetic
    assert zp.tolist() == [0] and zp.dtype == torch.int32 and scale.dtype == torch.float32


@pytest.mark.parametrize(("rule", "expected"), [("midpoint_up", 128), ("midpoint_down", 127)])
def test_unsigned_symmetric_zero_point_follows_the_profile_rule(rule: str, expected: int) -> None:
    profile = Profile(name="custom", unsigned_symmetric_zero_point=rule)  # type: ignore[arg-type]
    _, zp = symmetric_qparams(T([-1.0]), T([1.0]), get_dtype("uint8"), profile)
    assert zp.tolist() == [expected]


def test_asymmetric_maps_the_range_including_zero() -> None:
    scale, zp = asymmetric_qparams(T([2.0]), T([6.0]), get_dtype("uint8"), DEFAULT_PROFILE)
    # the range is [0, 6], not [2, 6]: 0.0 stays exactly representable
    assert scale.item() == T(6.0 / 255).item() and zp.tolist() == [0]


@pytest.mark.parametrize("fn", [symmetric_qparams, asymmetric_qparams])
@pytest.mark.parametrize("value", [0.0, 1e-30, -1e-30])
def test_zero_range_floors_the_scale_at_eps_before_the_zero_point(fn: object, value: float) -> None:
    assert callable(fn)
    scale, zp = fn(T([value]), T([value]), get_dtype("int8"), DEFAULT_PROFILE)
    assert scale.item() == EPS
    assert -128 <= zp.item() <= 127


def test_torchao_profile_floors_at_the_smallest_normal_of_the_compute_dtype() -> None:
    lo = T([0.0], dtype=torch.bfloat16)
    scale, _ = asymmetric_qparams(lo, lo, get_dtype("int8"), TORCHAO_PROFILE)
    assert scale.item() == torch.finfo(torch.bfloat16).smallest_normal


def test_quantize_rounds_half_to_even_before_adding_the_zero_point() -> None:
    qp = QParams(T(1.0), T(1, dtype=torch.int32), dtype="int8")
    codes = quantize(T([0.5, 1.5, 2.5, -0.5, -1.5]), qp)
    # round first: [0, 2, 2, -0, -2] + 1. Adding first would give [2, 2, 4, 0, 0].
    assert codes.tolist() == [1, 3, 3, 1, -1]


def test_codes_saturate_at_qmin_and_qmax() -> None:
    qp = QParams(T(0.1), T(0, dtype=torch.int32), dtype="int8")
    assert quantize(T([100.0, -100.0]), qp).tolist() == [127, -128]


def test_int32_codes_never_overflow_at_the_top_of_the_range(sym: Scheme) -> None:
    x = T([-1e4, 1e4])  # large enough that the scale stays above eps
    qp = sym.compute_qparams(x, "int32")
    codes = quantize(x, qp)
    assert codes.dtype == torch.int32
    assert codes[1].item() > 2**31 - 2**8, "float32 2**31 must not wrap to a negative code"
    assert codes[0].item() < -(2**31) + 2**8
    back = dequantize(codes, qp)
    assert torch.allclose(back, x, rtol=1e-6)


def test_zero_is_exact_after_a_round_trip(asym: Scheme) -> None:
    x = T([[0.0, 0.3, -2.0], [5.0, 0.0, 1.0]])
    for g in (PerTensor(), PerChannel(0), PerChannel(1)):
        qp = asym.compute_qparams(x, "uint8", g)
        back = dequantize(quantize(x, qp), qp)
        assert torch.equal(back[x == 0], torch.zeros(2))


def test_round_trip_error_is_at_most_half_a_step(asym: Scheme) -> None:
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(1))
    qp = asym.compute_qparams(x, "int8", PerGroup(1, 32))
    back = dequantize(quantize(x, qp), qp)
    assert qp.scale is not None
    step = qp.scale.repeat_interleave(32, dim=1)
    assert bool(((back - x).abs() <= step / 2 * (1 + 1e-5)).all())


def test_float64_input_is_cast_to_float32_first(asym: Scheme) -> None:
    x64 = torch.randn(16, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    qp64 = asym.compute_qparams(x64, "int8", PerChannel(0))
    qp32 = asym.compute_qparams(x64.float(), "int8", PerChannel(0))
    assert qp64.equals(qp32)
    assert torch.equal(quantize(x64, qp64), quantize(x64.float(), qp32))


def test_torchao_profile_computes_in_the_input_dtype(asym: Scheme) -> None:
    xb = torch.randn(8, 64, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    qp = asym.configure(profile="torchao").compute_qparams(xb, "int8", PerChannel(0))
    lo = torch.min(xb.amin(dim=1), torch.zeros(8, dtype=torch.bfloat16))
    hi = torch.max(xb.amax(dim=1), torch.zeros(8, dtype=torch.bfloat16))
    scale_bf16 = (hi - lo) / 255.0
    assert qp.scale is not None and torch.equal(qp.scale, scale_bf16.float())
    assert qp.compute_dtype == "input" and qp.profile == "torchao"


def test_quantize_refuses_non_finite_input_with_count_and_index() -> None:
    qp = QParams(T(0.5), T(0, dtype=torch.int32), dtype="int8")
    x = T([[1.0, 2.0], [float("inf"), float("nan")]])
    with pytest.raises(NonFiniteError) as info:
        quantize(x, qp, name="layer.weight")
    message = str(info.value)
    assert "'layer.weight' holds 2 non-finite value(s)" in message
    assert "the first is inf at index (1, 0)" in message


def test_qparams_that_do_not_fit_the_tensor_are_refused(asym: Scheme) -> None:
    qp = asym.compute_qparams(torch.ones(4, 8), "int8", PerChannel(0))
    with pytest.raises(QParamsError) as info:
        quantize(torch.ones(5, 8), qp, name="w")
    assert "needs scale/zero_point of shape (5,), got (4,)" in str(info.value)


def test_dequantize_widens_before_subtracting_the_zero_point() -> None:
    qp = QParams(T(1.0), T(-(2**31), dtype=torch.int32), dtype="int32")
    codes = T([2**31 - 1], dtype=torch.int32)
    # int32 arithmetic would wrap to -1; widened, it is 2**32 - 1 (rounded to float32)
    assert dequantize(codes, qp).tolist() == [T(float(2**32 - 1)).item()]


def test_float_targets_are_a_plain_cast(asym: Scheme) -> None:
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(4))
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        qp = asym.compute_qparams(x, name, PerChannel(0))
        assert qp.is_float and qp.scale is None and qp.zero_point is None
        q = quantize(x, qp)
        assert q.dtype == dt and torch.equal(q, x.to(dt))
        assert torch.equal(dequantize(q, qp), x.to(dt).float())


def _nibble_dtype(signed: bool) -> QuantDtype:
    """Unregistered 4-bit dtypes packed two per byte, as mono-quant-int4 registers them."""
    if signed:
        return QuantDtype("i4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
    return QuantDtype("u4", 4, False, 0, 15, "uint8", packing=Packing(4, 2))


@pytest.mark.parametrize(
    ("shape", "granularity"),
    [
        ((6, 64), PerGroup(-1, 32)),
        ((6, 64), PerChannel(0)),
        ((3, 4, 10), PerTensor()),
        ((6, 64), PerChannel(1)),
        ((4, 12), PerGroup(0, 2)),
        ((5, 7), PerTensor()),
    ],
)
@pytest.mark.parametrize("signed", [True, False])
def test_packing_inside_the_quantize_loop_equals_quantize_then_pack(
    shape: tuple[int, ...], granularity: PerTensor | PerChannel | PerGroup, signed: bool
) -> None:
    from mono_quant.core import pack
    from mono_quant.core._affine import quantize_affine

    dtype = _nibble_dtype(signed)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    scheme_scale = x.abs().amax() / 7
    from mono_quant.core import GranuleLayout

    qshape = GranuleLayout.of(shape, granularity).qparam_shape
    qp = QParams(
        torch.full(qshape, float(scheme_scale)),
        torch.full(qshape, 0 if signed else 8, dtype=torch.int32),
        dtype="int8",
        granularity=granularity,
    )
    codes = quantize_affine(x, qp, dtype)
    packed = quantize_affine(x, qp, dtype, pack=True)
    assert packed.dtype == torch.uint8 and torch.equal(packed, pack(codes, dtype))


def test_float_targets_refuse_non_finite_input_and_overflow(asym: Scheme) -> None:
    from mono_quant.core import CastOverflowError

    with pytest.raises(NonFiniteError, match="'w' holds 1 non-finite"):
        asym.compute_qparams(T([1.0, float("nan")]), "float16", name="w")
    qp = asym.compute_qparams(T([1.0, 2.0]), "float16")
    with pytest.raises(CastOverflowError) as info:
        quantize(T([1.0, 1e6, -7e4]), qp, name="w")
    message = str(info.value)
    assert "'w' holds 2 value(s) beyond float16's range (±65504)" in message
    assert "the first is 1e+06 at index (1,)" in message
    assert quantize(T([1e6]), asym.compute_qparams(T([1e6]), "bfloat16")).item() == pytest.approx(
        1e6, rel=1e-2
    )


def test_int32_codes_add_the_zero_point_exactly(asym: Scheme) -> None:
    # All-positive input: the scale floors at eps and the zero-point sits at -2**31,
    # where float32 spacing is 256 codes. The sum must be exact anyway.
    x = T([0.0, 1.0 + 3 * EPS, 0.25 + EPS])
    qp = asym.compute_qparams(x, "int32")
    assert qp.zero_point is not None and qp.zero_point.item() == -(2**31)
    codes = quantize(x, qp)
    assert codes.tolist() == [-(2**31), -(2**31) + 2**23 + 3, -(2**31) + 2**21 + 1]
    assert qp.scale is not None
    assert float((dequantize(codes, qp) - x).abs().max()) <= qp.scale.item() / 2


def test_a_range_that_overflows_the_compute_dtype_is_a_user_error(asym: Scheme) -> None:
    from mono_quant.core import RangeOverflowError

    x = torch.tensor([[60000.0, -10000.0], [1.0, 2.0]], dtype=torch.float16)
    with pytest.raises(RangeOverflowError) as info:
        asym.configure(profile="torchao").compute_qparams(x, "int8", PerChannel(0), name="w")
    message = str(info.value)
    assert "'w': the range [-10000, 60000] of granule (0,) overflows float16" in message
    assert "default profile computes in float32" in message
    assert asym.compute_qparams(x, "int8", PerChannel(0)).scale is not None  # default profile: fine


def test_torchao_profile_computes_float64_input_in_float32(asym: Scheme) -> None:
    qp = asym.configure(profile="torchao").compute_qparams(torch.zeros(4, dtype=torch.float64), "int8")
    assert qp.scale is not None and qp.scale.item() == torch.finfo(torch.float32).smallest_normal


@pytest.mark.parametrize(
    "granularity", [PerTensor(), PerChannel(0), PerChannel(1), PerGroup(1, 8), PerGroup(0, 2)]
)
def test_dequantize_into_a_preallocated_buffer_equals_a_fresh_result(
    asym: Scheme, granularity: PerTensor | PerChannel | PerGroup
) -> None:
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(11))
    codes, qp = asym.quantize_tensor(x, "int8", granularity)
    buffer = torch.full((6, 16), float("nan"))
    result = dequantize(codes, qp, out=buffer)
    assert result is buffer and torch.equal(buffer, dequantize(codes, qp))
    with pytest.raises(QParamsError, match=r"out must be a torch.float32 tensor of shape \(6, 16\)"):
        dequantize(codes, qp, out=torch.empty(6, 15))


@pytest.mark.parametrize(
    ("shape", "granularity"),
    [
        ((6, 64), PerGroup(-1, 32)),  # unpacked inside the dequantize loop
        ((600, 1000), PerChannel(0)),  # several blocks, a partial last one
        ((3, 4, 10), PerTensor()),
        ((6, 64), PerChannel(1)),  # rows across the packing axis: unpack first
        ((5, 7), PerTensor()),  # odd last axis: unpack first
    ],
)
@pytest.mark.parametrize("signed", [True, False])
def test_dequantize_of_packed_codes_equals_unpack_then_dequantize(
    shape: tuple[int, ...], granularity: PerTensor | PerChannel | PerGroup, signed: bool
) -> None:
    from mono_quant.core import GranuleLayout, unpack
    from mono_quant.core._affine import dequantize_affine, quantize_affine

    dtype = _nibble_dtype(signed)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(shape, generator=gen)
    qshape = GranuleLayout.of(shape, granularity).qparam_shape
    qp = QParams(
        torch.rand(qshape, generator=gen) * 0.3 + 0.05,
        torch.randint(-3 if signed else 5, 4 if signed else 12, qshape, generator=gen, dtype=torch.int32),
        dtype="int8",
        granularity=granularity,
    )
    packed = quantize_affine(x, qp, dtype, pack=True)
    expected = dequantize_affine(unpack(packed, dtype, shape), qp)
    assert torch.equal(dequantize_affine(packed, qp, packed=(dtype, shape)), expected)
    buffer = torch.full(shape, float("nan"))
    assert dequantize_affine(packed, qp, packed=(dtype, shape), out=buffer) is buffer
    assert torch.equal(buffer, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_the_finiteness_test_is_exact_when_the_sum_overflows(dtype: torch.dtype) -> None:
    from mono_quant.core._kernels import all_finite

    big = torch.finfo(dtype).max
    assert all_finite(torch.full((1000,), big, dtype=dtype))  # the sum overflows; the values are finite
    assert all_finite(torch.tensor([big, -big, big], dtype=dtype))
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.ones(1000, dtype=dtype)
        x[617] = bad
        assert not all_finite(x)
    assert not all_finite(torch.tensor([float("inf"), -float("inf")], dtype=dtype))  # the sum is NaN


def test_quantize_refuses_non_finite_input_whatever_the_block() -> None:
    from mono_quant.core._kernels import BLOCK_ELEMENTS

    x = torch.ones(3 * BLOCK_ELEMENTS // 1000 + 5, 1000)
    qp = QParams(torch.tensor(0.1), torch.tensor(0, dtype=torch.int32), dtype="int8")
    x[-1, -1] = float("nan")  # in the last, partial block
    with pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite .* at index \(790, 999\)"):
        quantize(x, qp, name="w")
