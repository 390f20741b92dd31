"""Tests of mono-quant-nf4: the codebook, the scheme's qparams and codes, policies, packing, registration.

The conformance suite checks the properties every scheme shares; these tests
check what is particular to NF4 (the table, nearest-level coding, the absmax
scale, the byte layout) against oracles written independently of the plugin.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.core import (
    Capabilities,
    Granularity,
    GroupSizeError,
    MinMaxScheme,
    MonoQuantError,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QParamsError,
    QuantDtype,
    UnsupportedDtypeError,
    asymmetric_qparams,
    dequantize,
    get_dtype,
    get_scheme,
    pack,
    packed_shape,
    plugin_report,
    quantize,
    unpack,
)
from mono_quant.nf4 import (
    DEFAULT_GROUP_SIZE,
    NF4,
    NF4_LEVELS,
    NF4Scheme,
    nf4_codebook,
    nf4_decode,
    nf4_encode,
    nf4_thresholds,
)

EPS = torch.finfo(torch.float32).eps
#: Half the widest gap between adjacent levels (between -1 and -0.696): the worst
#: round-trip error, as a fraction of the scale.
HALF_WIDEST_GAP = (NF4_LEVELS[1] - NF4_LEVELS[0]) / 2

#: The decision-tree constants of bitsandbytes' ``dQuantizeNF4`` (csrc/kernels.cu),
#: copied as published: an oracle independent of how the plugin derives its thresholds.
BITSANDBYTES_THRESHOLDS = (
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
)


def granule_absmax(x: torch.Tensor, g: Granularity) -> torch.Tensor:
    """max |x| per granule in float64, by reshaping (not through mono_quant.core)."""
    a = x.to(torch.float64).abs()
    if isinstance(g, PerTensor):
        return a.max()
    axis = g.axis % x.dim()
    if isinstance(g, PerChannel):
        return a.movedim(axis, 0).reshape(x.shape[axis], -1).amax(dim=1)
    t = a.movedim(axis, -1)
    groups = math.ceil(t.shape[-1] / g.group_size)
    # |x| >= 0, so zero padding leaves a partial group's max its own.
    t = torch.nn.functional.pad(t, (0, groups * g.group_size - t.shape[-1]))
    return t.reshape(*t.shape[:-1], groups, g.group_size).amax(dim=-1).movedim(-1, axis)


def scale_like(scale: torch.Tensor, shape: tuple[int, ...], g: Granularity) -> torch.Tensor:
    """Each element's scale, broadcast to ``shape``."""
    if isinstance(g, PerTensor):
        return scale.expand(shape)
    axis = g.axis % len(shape)
    if isinstance(g, PerChannel):
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return scale.reshape(view).expand(shape)
    return scale.repeat_interleave(g.group_size, dim=axis).narrow(axis, 0, shape[axis])


# --- the codebook ---------------------------------------------------------------------------


def test_levels_are_rebuilt_bit_for_bit_from_the_normal_quantile_construction() -> None:
    # bitsandbytes' create_normal_map(offset=0.9677083, use_extra_value=True), in the
    # float32 it runs in: 8 positive and 7 negative N(0, 1) quantiles, 0, scaled to max 1.
    offset = 0.9677083
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).float().sort().values
    assert torch.equal(values / values.max(), nf4_codebook())


def test_codebook_is_increasing_with_exact_ends_and_one_exact_zero() -> None:
    levels = nf4_codebook()
    assert levels.dtype == torch.float32 and levels.shape == (16,)
    assert bool((levels[1:] > levels[:-1]).all())
    assert (levels[0].item(), levels[7].item(), levels[15].item()) == (-1.0, 0.0, 1.0)
    assert (int((levels < 0).sum()), int((levels > 0).sum())) == (7, 8)
    assert levels.double().tolist() == list(NF4_LEVELS)  # the listed values are float32-exact


def test_thresholds_are_bitsandbytes_decision_constants() -> None:
    expected = torch.tensor(BITSANDBYTES_THRESHOLDS, dtype=torch.float32)
    assert torch.equal(nf4_thresholds(), expected)


# --- nearest-level coding -------------------------------------------------------------------


def test_each_level_codes_to_its_own_index() -> None:
    assert nf4_encode(nf4_codebook()).tolist() == list(range(16))


@given(st.floats(-1.25, 1.25, width=32))
def test_encode_picks_the_nearest_level(value: float) -> None:
    x = torch.tensor([value], dtype=torch.float32)
    if bool(torch.isin(x, nf4_thresholds()).any()):
        return  # exact boundaries: see the tie test
    # Away from the float32 boundaries the exact nearest level is unique.
    nearest = int((x.double() - nf4_codebook().double()).abs().argmin())
    assert int(nf4_encode(x)) == nearest


def test_dense_grid_codes_to_the_nearest_level() -> None:
    x = torch.linspace(-1.1, 1.1, 200_001, dtype=torch.float32)
    x = x[~torch.isin(x, nf4_thresholds())]
    nearest = (x.double()[:, None] - nf4_codebook().double()[None, :]).abs().argmin(dim=1)
    assert torch.equal(nf4_encode(x).long(), nearest)


def test_a_value_on_a_boundary_gets_the_lower_code() -> None:
    t = nf4_thresholds()
    assert nf4_encode(t).tolist() == list(range(15))
    just_above = torch.nextafter(t, torch.full_like(t, math.inf))
    assert nf4_encode(just_above).tolist() == list(range(1, 16))


def test_values_beyond_the_range_take_the_end_codes() -> None:
    x = torch.tensor([-3.0, -1.0000001, 1.0000001, 3.0, -math.inf, math.inf])
    assert nf4_encode(x).tolist() == [0, 0, 15, 15, 0, 15]


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        (torch.tensor([0, 16]), "got 16"),
        (torch.tensor([-1, 3]), "got -1"),
        (torch.tensor([0.0, 1.0]), "integer tensor"),
    ],
)
def test_decode_rejects_codes_that_are_not_nf4(codes: torch.Tensor, match: str) -> None:
    with pytest.raises(MonoQuantError, match=match):
        nf4_decode(codes)


# --- qparams --------------------------------------------------------------------------------


def test_default_is_one_absmax_scale_per_64_elements_of_the_last_axis() -> None:
    x = torch.randn(3, 2 * DEFAULT_GROUP_SIZE, generator=torch.Generator().manual_seed(0))
    qp = NF4Scheme().compute_qparams(x)
    assert qp.dtype == "nf4" and qp.granularity == PerGroup(1, 64) and qp.affine is False
    assert qp.scheme == "nf4" and qp.scale is not None
    assert torch.equal(qp.scale, x.abs().reshape(3, 2, 64).amax(dim=-1))


@pytest.mark.parametrize(
    ("shape", "granularity", "scale_shape"),
    [
        ((4, 128), PerGroup(-1, 64), (4, 2)),
        ((4, 6), PerGroup(0, 2), (2, 6)),
        ((2, 8, 3), PerGroup(1, 4), (2, 2, 3)),
        ((2, 8, 3), PerGroup(-2, 8), (2, 1, 3)),
        ((4, 6), PerChannel(1), (6,)),
        ((2, 3, 5), PerChannel(-3), (2,)),
        ((4, 6), PerTensor(), ()),
        ((), PerTensor(), ()),
    ],
)
def test_scale_and_zero_point_shapes_follow_the_granularity(
    shape: tuple[int, ...], granularity: Granularity, scale_shape: tuple[int, ...]
) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    qp = NF4Scheme().compute_qparams(x, granularity=granularity)
    assert qp.scale is not None and qp.zero_point is not None
    assert tuple(qp.scale.shape) == scale_shape and tuple(qp.zero_point.shape) == scale_shape
    assert qp.scale.dtype == torch.float32 and qp.zero_point.dtype == torch.int32
    assert not bool(qp.zero_point.any())  # unused by a codebook: all zeros


@given(st.data())
def test_scale_is_each_granules_absmax(data: st.DataObject) -> None:
    x = data.draw(mqst.tensors())
    g = data.draw(mqst.granularities(tuple(x.shape)))
    qp = NF4Scheme().compute_qparams(x, granularity=g)
    expected = granule_absmax(x, g).float().clamp(min=EPS)
    assert qp.scale is not None
    assert torch.equal(qp.scale, expected), f"{x.dtype} {tuple(x.shape)} {g}"


def test_an_all_zero_tensor_gets_a_finite_positive_scale_and_zero_codes() -> None:
    x = torch.zeros(2, 64)
    qp = NF4Scheme().compute_qparams(x)
    assert qp.scale is not None and torch.equal(qp.scale, torch.full((2, 1), EPS))
    codes = quantize(x, qp)
    assert bool((codes == 7).all())
    assert torch.equal(dequantize(codes, qp), x)


def test_only_the_nf4_dtype_is_supported() -> None:
    with pytest.raises(UnsupportedDtypeError, match="nf4"):
        NF4Scheme().compute_qparams(torch.randn(4, 64), "int8")


class _EveryAffineDtype(MinMaxScheme):
    """An affine scheme that claims every affine integer dtype (``dtypes=None``), as ``asymmetric`` does."""

    name, version = "every-affine-dtype", "0"
    capabilities = Capabilities(dtypes=None)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


def test_the_nf4_dtype_is_a_codebook_that_affine_schemes_refuse() -> None:
    assert NF4.affine is False
    assert not _EveryAffineDtype().supports_dtype(NF4)
    with pytest.raises(UnsupportedDtypeError, match="'nf4'"):
        _EveryAffineDtype().compute_qparams(torch.randn(4, 64), NF4)


def test_a_float_target_is_a_plain_cast() -> None:
    x = torch.randn(2, 64)
    qp = NF4Scheme().compute_qparams(x, "bfloat16")
    assert qp.is_float
    assert torch.equal(quantize(x, qp), x.to(torch.bfloat16))


# --- round trip -----------------------------------------------------------------------------


@given(st.data())
def test_round_trip_error_is_at_most_half_the_widest_gap_times_the_scale(data: st.DataObject) -> None:
    x = data.draw(mqst.tensors())
    g = data.draw(mqst.granularities(tuple(x.shape)))
    scheme = NF4Scheme()
    qp = scheme.compute_qparams(x, granularity=g)
    codes = scheme.quantize(x, qp)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15
    back = scheme.dequantize(codes, qp, dtype=torch.float64)
    assert qp.scale is not None
    bound = scale_like(qp.scale.double(), tuple(x.shape), qp.granularity) * (HALF_WIDEST_GAP + 1e-6)
    error = (back - x.double()).abs()
    assert bool((error <= bound).all()), f"{x.dtype} {tuple(x.shape)} {g}: max error {error.max()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_zeros_and_each_granules_largest_magnitude_round_trip_exactly(dtype: torch.dtype) -> None:
    x = torch.randn(4, 128, generator=torch.Generator().manual_seed(2)).to(dtype)
    x[:, ::5] = 0.0
    qp = NF4Scheme().compute_qparams(x)
    back = dequantize(quantize(x, qp), qp, dtype=dtype)
    assert bool((back[:, ::5] == 0).all())
    groups, back_groups = x.reshape(4, 2, 64), back.reshape(4, 2, 64)
    peak = groups.abs().argmax(dim=-1, keepdim=True)
    assert torch.equal(back_groups.gather(-1, peak), groups.gather(-1, peak))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_codes_like_its_float32_value(dtype: torch.dtype) -> None:
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(3)).to(dtype)
    scheme = NF4Scheme()
    qp, qp32 = scheme.compute_qparams(x), scheme.compute_qparams(x.float())
    assert qp.equals(qp32)
    assert torch.equal(scheme.quantize(x, qp), scheme.quantize(x.float(), qp32))


def test_core_quantize_and_dequantize_hand_nf4_qparams_to_the_scheme() -> None:
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(4))
    scheme = get_scheme("nf4")
    qp = scheme.compute_qparams(x)
    codes = quantize(x, qp)
    assert torch.equal(codes, scheme.quantize(x, qp))
    # A round trip through the stored form (tensors + string metadata) still dispatches here.
    restored = QParams.from_tensors(qp.tensors(), qp.metadata())
    assert torch.equal(dequantize(codes, restored), scheme.dequantize(codes, qp))


def test_input_is_not_mutated_and_output_is_deterministic() -> None:
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(5)).t()  # non-contiguous
    before = x.clone()
    scheme = NF4Scheme()
    first = scheme.quantize(x, scheme.compute_qparams(x, granularity=PerGroup(0, 4)))
    second = scheme.quantize(x, scheme.compute_qparams(x, granularity=PerGroup(0, 4)))
    assert torch.equal(x, before) and torch.equal(first, second)


def test_qparams_from_another_scheme_are_refused() -> None:
    affine = QParams(torch.tensor(0.5), torch.tensor(0, dtype=torch.int32), dtype="int8", scheme="asymmetric")
    with pytest.raises(QParamsError, match="non-affine qparams of dtype 'nf4'"):
        NF4Scheme().quantize(torch.ones(4), affine)


def test_qparams_for_another_shape_are_refused() -> None:
    qp = NF4Scheme().compute_qparams(torch.randn(2, 128))
    with pytest.raises(QParamsError, match=r"needs a scale of shape \(4, 2\)"):
        NF4Scheme().quantize(torch.randn(4, 128), qp)


# --- policies -------------------------------------------------------------------------------


def test_a_group_size_that_does_not_divide_the_axis_raises_by_default() -> None:
    with pytest.raises(GroupSizeError, match=r"size 100\); got 64"):
        NF4Scheme().compute_qparams(torch.randn(2, 100), name="lm_head.weight")


def test_pad_makes_the_last_group_partial_with_its_own_scale() -> None:
    x = torch.randn(2, 100, generator=torch.Generator().manual_seed(6))
    scheme = get_scheme("nf4", nondivisible="pad")
    qp = scheme.compute_qparams(x)
    assert qp.scale is not None and tuple(qp.scale.shape) == (2, 2)
    assert torch.equal(qp.scale[:, 1], x[:, 64:].abs().amax(dim=1))
    codes = scheme.quantize(x, qp)
    assert codes.shape == (2, 100)
    error = (scheme.dequantize(codes, qp) - x).abs()
    assert bool((error <= scale_like(qp.scale, (2, 100), qp.granularity) * HALF_WIDEST_GAP * 1.000001).all())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_raises_naming_the_tensor_count_and_first_index(bad: float) -> None:
    x = torch.randn(3, 64)
    x[1, 5] = bad
    x[2, 0] = bad
    with pytest.raises(NonFiniteError, match=r"'w' holds 2 non-finite value\(s\).* at index \(1, 5\)"):
        NF4Scheme().compute_qparams(x, name="w")


def test_float64_magnitudes_beyond_float32_are_refused_with_the_reason() -> None:
    x = torch.tensor([1.0, 1e300], dtype=torch.float64)
    with pytest.raises(MonoQuantError, match="beyond float32's range"):
        NF4Scheme().compute_qparams(x, granularity=PerTensor())


def test_non_finite_input_to_quantize_raises_even_with_valid_qparams() -> None:
    x = torch.randn(3, 64)
    qp = NF4Scheme().compute_qparams(x)
    x[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match=r"index \(0, 0\)"):
        quantize(x, qp)


# --- packing --------------------------------------------------------------------------------


def test_the_first_code_of_a_pair_is_stored_in_the_high_nibble() -> None:
    codes = torch.tensor([1, 2, 15], dtype=torch.uint8)
    assert pack(codes, NF4).tolist() == [0x12, 0xF0]


@given(mqst.shapes(max_side=9), st.integers(0, 2**31 - 1))
def test_pack_then_unpack_is_the_identity(shape: tuple[int, ...], seed: int) -> None:
    codes = torch.randint(0, 16, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    packed = pack(codes, get_dtype("nf4"))
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == packed_shape(shape, NF4)
    assert packed.shape[-1] == -(-shape[-1] // 2)
    assert torch.equal(unpack(packed, NF4, shape), codes)


# --- registration ---------------------------------------------------------------------------


def test_the_plugin_registers_the_nf4_dtype_and_scheme() -> None:
    assert get_dtype("nf4") == NF4
    scheme = get_scheme("nf4")
    assert isinstance(scheme, NF4Scheme) and scheme.distribution == "mono-quant-nf4"
    (record,) = [p for p in plugin_report().plugins if p.distribution == "mono-quant-nf4"]
    assert (record.status, record.schemes, record.dtypes) == ("loaded", ("nf4",), ("nf4",))
