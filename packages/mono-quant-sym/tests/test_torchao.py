"""``symmetric`` equals torchao 0.18's ``choose_qparams_affine`` + ``quantize_affine`` bit for bit.

Default profile: oracle with ``eps=torch.finfo(torch.float32).eps`` on ``x.float()``.
``torchao`` profile: oracle with its defaults (``eps=None``) on ``x`` itself, so
fp16/bf16 inputs are computed in their own dtype on both sides.
Scale, zero-point and codes are compared, for every registered dtype torchao
also knows (int8, uint8, and int4/uint4 when mono-quant-int4 is installed).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

from mono_quant.conformance import strategies as mqst
from mono_quant.core import (
    Granularity,
    MonoQuantError,
    PerChannel,
    PerGroup,
    PerTensor,
    Scheme,
    get_scheme,
    list_dtypes,
)

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

MAPPING = MappingType.SYMMETRIC
DEFAULT = get_scheme("symmetric")
TORCHAO = get_scheme("symmetric", profile="torchao")
F32_EPS = torch.finfo(torch.float32).eps

#: Our dtype -> (torchao target dtype for the qparams, output dtype and range for the codes).
#: torchao knows torch.int4/uint4 for its ranges but cannot cast codes to torch.int4
#: (and torch.int4/uint4 are missing from torch's stubs).
ORACLE_DTYPES: dict[str, tuple[torch.dtype, torch.dtype, int | None, int | None]] = {
    "int8": (torch.int8, torch.int8, None, None),
    "uint8": (torch.uint8, torch.uint8, None, None),
    "int4": (torch.int4, torch.int8, -8, 7),  # type: ignore[attr-defined]
    "uint4": (torch.uint4, torch.uint4, None, None),  # type: ignore[attr-defined]
}
QDTYPES = [name for name in ORACLE_DTYPES if name in list_dtypes()]
GROUP_SIZES = (32, 64, 128)
TORCHAO_INPUTS = ["float32", "bfloat16", "float16"]  # what torchao's quantize_affine accepts

#: The fixed sweep: 1-D..4-D, with axes long enough for every group size somewhere.
SWEEP_SHAPES = [(7,), (256,), (5, 6), (3, 128), (64, 4), (3, 4, 5), (2, 96, 3), (2, 3, 4, 5), (2, 32, 2, 3)]


def block_size(shape: tuple[int, ...], granularity: Granularity) -> tuple[int, ...]:
    """torchao's ``block_size`` for one of our granularities."""
    if isinstance(granularity, PerTensor):
        return shape
    g = granularity.normalize(len(shape))
    if isinstance(g, PerChannel):
        return tuple(1 if i == g.axis else n for i, n in enumerate(shape))
    assert isinstance(g, PerGroup)
    return tuple(g.group_size if i == g.axis else 1 for i in range(len(shape)))


def torchao_reference(
    x: torch.Tensor, granularity: Granularity, dtype: str, eps: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's scale, zero-point and codes for ``x`` (which torchao needs contiguous)."""
    target, out_dtype, qmin, qmax = ORACLE_DTYPES[dtype]
    x = x.contiguous()
    block = block_size(tuple(x.shape), granularity)
    flat = all(b == 1 for b in block)
    if flat:
        # Every granule is one element. torchao then reduces over no dim, which
        # torch.amin treats as *every* dim; doubling each element keeps its min/max.
        x = x.reshape(-1, 1).expand(-1, 2).contiguous()
        block = (1, 2)
    scale, zero_point = choose_qparams_affine(x, MAPPING, block, target, qmin, qmax, eps=eps)
    codes = quantize_affine(x, block, scale, zero_point, out_dtype, qmin, qmax)
    if flat:
        codes = codes[:, 0]
    return scale, zero_point, codes


def check(
    scheme: Scheme,
    x: torch.Tensor,
    granularity: Granularity,
    dtype: str,
    oracle_input: torch.Tensor,
    eps: float | None,
    bitexact: BitExact,
) -> None:
    scale, zero_point, ref_codes = torchao_reference(oracle_input, granularity, dtype, eps)
    what = f"{scheme.profile.name} {dtype} {granularity} {x.dtype} {tuple(x.shape)}"
    if not bool(torch.isfinite(scale).all()):
        # The range overflows the compute dtype (fp16 input, torchao profile: hi - lo > 65504).
        # torchao returns an infinite scale; QParams must be finite, so we raise instead.
        with pytest.raises(MonoQuantError):
            scheme.compute_qparams(x, dtype, granularity)
        return
    qp = scheme.compute_qparams(x, dtype, granularity)
    codes = scheme.quantize(x, qp)
    assert qp.scale is not None and qp.zero_point is not None
    bitexact(qp.scale, scale, "scale " + what)
    bitexact(qp.zero_point, zero_point, "zero_point " + what)
    bitexact(codes, ref_codes, "codes " + what)
    one_pass, _ = scheme.quantize_tensor(x, dtype, granularity)
    bitexact(one_pass, ref_codes, "quantize_tensor codes " + what)


@st.composite
def cases(draw: st.DrawFn, float_dtypes: list[str] | None = None) -> tuple[torch.Tensor, Granularity, str]:
    """Any tensor, any granularity the shared strategies draw for it, any dtype."""
    x = draw(mqst.tensors(dtypes=mqst.float_dtypes(float_dtypes)), label="x")
    granularity = draw(mqst.granularities(tuple(x.shape)))
    return x, granularity, draw(st.sampled_from(QDTYPES))


@st.composite
def group_cases(draw: st.DrawFn, remainder: bool = False) -> tuple[torch.Tensor, Granularity, str]:
    """Group sizes 32/64/128 on any axis: a small shape whose group axis is stretched to a
    multiple of the group size (plus a remainder 1..gs-1 when ``remainder``)."""
    shape = list(draw(mqst.shapes(max_side=5)))
    axis = draw(st.integers(0, len(shape) - 1))
    group_size = draw(st.sampled_from(GROUP_SIZES))
    extra = draw(st.integers(1, group_size - 1)) if remainder else 0
    shape[axis] = group_size * draw(st.integers(0 if remainder else 1, 3)) + extra
    x = draw(mqst.tensors(shapes=st.just(tuple(shape))), label="x")
    signed_axis = axis - len(shape) if draw(st.booleans()) else axis
    return x, PerGroup(signed_axis, group_size), draw(st.sampled_from(QDTYPES))


@given(case=cases())
def test_default_profile_equals_torchao_with_float32_eps(
    case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(DEFAULT, x, granularity, dtype, x.float(), F32_EPS, bitexact)


@given(case=group_cases())
def test_default_profile_equals_torchao_for_group_sizes_32_64_128(
    case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(DEFAULT, x, granularity, dtype, x.float(), F32_EPS, bitexact)


@given(case=group_cases(remainder=True))
def test_pad_policy_equals_torchao_on_the_full_groups_and_on_the_partial_group(
    case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    """``nondivisible="pad"``: the full groups are torchao's groups and the last, partial
    group is quantized as a group of its own (its min/max are its own elements)."""
    x, granularity, dtype = case
    assert isinstance(granularity, PerGroup)
    axis = granularity.axis % x.dim()
    size, group_size = x.shape[axis], granularity.group_size
    full = size // group_size
    qp = DEFAULT.configure(nondivisible="pad").compute_qparams(x, dtype, granularity)
    codes = DEFAULT.quantize(x, qp)
    assert qp.scale is not None and qp.zero_point is not None
    assert qp.scale.shape[axis] == full + 1
    assert codes.shape == x.shape
    rest = size - full * group_size
    parts = [  # (first element, elements, first group, groups, group size) along the axis
        (0, full * group_size, 0, full, group_size),
        (full * group_size, rest, full, 1, rest),
    ]
    for start, length, group_start, groups, part_size in parts:
        if length == 0:
            continue
        piece = x.float().narrow(axis, start, length)
        scale, zero_point, ref_codes = torchao_reference(piece, PerGroup(axis, part_size), dtype, F32_EPS)
        what = f"pad {dtype} {granularity} {tuple(x.shape)} elements {start}..{start + length}"
        bitexact(qp.scale.narrow(axis, group_start, groups), scale, "scale " + what)
        bitexact(qp.zero_point.narrow(axis, group_start, groups), zero_point, "zero_point " + what)
        bitexact(codes.narrow(axis, start, length), ref_codes, "codes " + what)


@given(case=cases(TORCHAO_INPUTS))
def test_torchao_profile_equals_torchao_defaults_in_the_input_dtype(
    case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(TORCHAO, x, granularity, dtype, x, None, bitexact)


def _sweep_granularities(shape: tuple[int, ...], negative: bool) -> list[Granularity]:
    """Per-tensor, then per-channel and every fitting group size on each axis, each axis
    spelled non-negative or negative (the sweep alternates; hypothesis draws both)."""
    out: list[Granularity] = [PerTensor()]
    for axis in range(len(shape)):
        spelled = axis - len(shape) if negative else axis
        out.append(PerChannel(spelled))
        out += [PerGroup(spelled, g) for g in GROUP_SIZES if shape[axis] % g == 0]
    return out


@pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
@pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
def test_every_element_kind_and_float_dtype_equals_torchao(
    kind_index: int, float_index: int, bitexact: BitExact
) -> None:
    """A fixed sweep, so every edge case runs whatever hypothesis draws: each element kind
    with each input dtype, both profiles, on a rotating shape with every axis (either
    sign), group sizes 32/64/128 where they fit, contiguous or a strided view."""
    kind = mqst.ELEMENT_KINDS[kind_index]
    name, float_dtype = list(mqst.FLOAT_DTYPES.items())[float_index]
    shape = SWEEP_SHAPES[(kind_index + float_index) % len(SWEEP_SHAPES)]
    x = mqst.make_tensor(shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1)
    for granularity in _sweep_granularities(shape, negative=kind_index % 2 == 1):
        for dtype in QDTYPES:
            check(DEFAULT, x, granularity, dtype, x.float(), F32_EPS, bitexact)
            if name in TORCHAO_INPUTS:
                check(TORCHAO, x, granularity, dtype, x, None, bitexact)


def test_torchao_profile_differs_from_default_where_torchao_does() -> None:
    """The profiles are not the same thing twice: on bf16 input torchao's math in bf16
    rounds scales the float32 default keeps exact, and its eps floor is far lower."""
    bf16 = torch.tensor([1.0, 1.0078125, -0.5, 0.25], dtype=torch.bfloat16)
    tiny = torch.full((4,), 1e-30)
    for x in (bf16, tiny):
        d, t = DEFAULT.compute_qparams(x, "int8"), TORCHAO.compute_qparams(x, "int8")
        ref, _ = choose_qparams_affine(x, MAPPING, tuple(x.shape), torch.int8)
        assert d.scale is not None and t.scale is not None
        assert torch.equal(t.scale, ref.float())
        assert not torch.equal(d.scale, t.scale)
    assert d.scale is not None and t.scale is not None
    assert float(d.scale) == F32_EPS and 0 < float(t.scale) < 1e-31  # tiny: floored vs its own range
