"""``int4-symmetric`` and ``int4-asymmetric`` equal torchao 0.18 bit for bit.

Oracle: ``choose_qparams_affine`` (target ``torch.int4`` / ``torch.uint4``, so
torchao uses its own ranges -8..7 and 0..15) and ``quantize_affine`` (codes as
int8 in -8..7, or torchao's uint4 output, which it stores as uint8).
Default profile: ``eps=torch.finfo(torch.float32).eps`` on ``x.float()``;
``torchao`` profile: torchao's defaults (``eps=None``) on ``x`` in its own dtype.
Scale, zero-point and codes are compared, the codes both from ``quantize`` and from
``quantize_tensor`` (one pass), and the packed bytes of ``quantize_tensor(pack=True)``
(nibbles packed inside the quantize loop) with ``pack`` of the checked codes.
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
    get_dtype,
    get_scheme,
    pack,
)

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

MAPPINGS = {"int4-symmetric": MappingType.SYMMETRIC, "int4-asymmetric": MappingType.ASYMMETRIC}
SCHEMES = list(MAPPINGS)
F32_EPS = torch.finfo(torch.float32).eps
#: Our dtype -> (torchao target dtype for the qparams, output dtype and range for the codes).
#: torchao derives -8..7 from torch.int4 but cannot cast codes to torch.int4
#: (and torch.int4/uint4 are missing from torch's stubs).
ORACLE_DTYPES: dict[str, tuple[torch.dtype, torch.dtype, int | None, int | None]] = {
    "int4": (torch.int4, torch.int8, -8, 7),  # type: ignore[attr-defined]
    "uint4": (torch.uint4, torch.uint4, None, None),  # type: ignore[attr-defined]
}
QDTYPES = list(ORACLE_DTYPES)
GROUP_SIZES = (32, 64, 128)
TORCHAO_INPUTS = ["float32", "bfloat16", "float16"]  # what torchao's quantize_affine accepts
SWEEP_SHAPES = [(256,), (7,), (3, 128), (64, 4), (2, 96, 3), (3, 4, 5), (2, 32, 2, 3), (2, 3, 4, 5)]


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
    x: torch.Tensor, granularity: Granularity, dtype: str, mapping: MappingType, eps: float | None
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
    scale, zero_point = choose_qparams_affine(x, mapping, block, target, qmin, qmax, eps=eps)
    codes = quantize_affine(x, block, scale, zero_point, out_dtype, qmin, qmax)
    if flat:
        codes = codes[:, 0]
    return scale, zero_point, codes


def check(
    scheme: Scheme,
    x: torch.Tensor,
    granularity: Granularity | None,
    dtype: str | None,
    torchao_profile: bool,
    bitexact: BitExact,
) -> None:
    """Compare ``scheme`` (its defaults where ``granularity``/``dtype`` are None) with torchao."""
    oracle_input, eps = (x, None) if torchao_profile else (x.float(), F32_EPS)
    caps = scheme.capabilities
    used_granularity = granularity if granularity is not None else caps.default_granularity
    used_dtype = dtype if dtype is not None else caps.default_dtype
    ref = torchao_reference(oracle_input, used_granularity, used_dtype, MAPPINGS[scheme.name], eps)
    what = f"{scheme.name} {scheme.profile.name} {used_dtype} {used_granularity} {x.dtype} {tuple(x.shape)}"
    if not bool(torch.isfinite(ref[0]).all()):
        # The range overflows the compute dtype (fp16 input, torchao profile: hi - lo > 65504).
        # torchao returns an infinite scale; QParams must be finite, so we raise instead.
        with pytest.raises(MonoQuantError):
            scheme.compute_qparams(x, dtype, granularity)
        return
    qp = scheme.compute_qparams(x, dtype, granularity)
    codes = scheme.quantize(x, qp)
    assert qp.scale is not None and qp.zero_point is not None
    bitexact(qp.scale, ref[0], "scale " + what)
    bitexact(qp.zero_point, ref[1], "zero_point " + what)
    bitexact(codes, ref[2], "codes " + what)
    one_pass, _ = scheme.quantize_tensor(x, dtype, granularity)
    bitexact(one_pass, ref[2], "quantize_tensor codes " + what)
    packed, _ = scheme.quantize_tensor(x, dtype, granularity, pack=True)  # fused nibble packing
    bitexact(packed, pack(codes, get_dtype(qp.dtype)), "quantize_tensor(pack=True) " + what)


@st.composite
def cases(draw: st.DrawFn, float_dtypes: list[str] | None = None) -> tuple[torch.Tensor, Granularity, str]:
    """Any tensor, any granularity the shared strategies draw for it, int4 or uint4."""
    x = draw(mqst.tensors(dtypes=mqst.float_dtypes(float_dtypes)), label="x")
    return x, draw(mqst.granularities(tuple(x.shape))), draw(st.sampled_from(QDTYPES))


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


@st.composite
def linear_weights(draw: st.DrawFn) -> torch.Tensor:
    """2-D ``(out, in)`` weights whose input axis is a multiple of the default group size."""
    shape = (draw(st.integers(1, 16)), 128 * draw(st.integers(1, 4)))
    return draw(mqst.tensors(shapes=st.just(shape)), label="w")


@given(name=st.sampled_from(SCHEMES), w=linear_weights())
def test_defaults_group_128_along_the_input_axis_equal_torchao(
    name: str, w: torch.Tensor, bitexact: BitExact
) -> None:
    scheme = get_scheme(name)
    qp = scheme.compute_qparams(w)
    assert (qp.dtype, qp.granularity) == ("int4", PerGroup(1, 128))
    check(scheme, w, None, None, False, bitexact)


@given(name=st.sampled_from(SCHEMES), case=cases())
def test_default_profile_equals_torchao_with_float32_eps(
    name: str, case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(get_scheme(name), x, granularity, dtype, False, bitexact)


@given(name=st.sampled_from(SCHEMES), case=group_cases())
def test_default_profile_equals_torchao_for_group_sizes_32_64_128(
    name: str, case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(get_scheme(name), x, granularity, dtype, False, bitexact)


@given(name=st.sampled_from(SCHEMES), case=group_cases(remainder=True))
def test_pad_policy_equals_torchao_on_the_full_groups_and_on_the_partial_group(
    name: str, case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    """``nondivisible="pad"``: the full groups are torchao's groups and the last, partial
    group is quantized as a group of its own (its min/max are its own elements)."""
    x, granularity, dtype = case
    assert isinstance(granularity, PerGroup)
    scheme = get_scheme(name, nondivisible="pad")
    axis = granularity.axis % x.dim()
    size, group_size = x.shape[axis], granularity.group_size
    full, rest = divmod(size, group_size)
    qp = scheme.compute_qparams(x, dtype, granularity)
    codes = scheme.quantize(x, qp)
    assert qp.scale is not None and qp.zero_point is not None
    assert qp.scale.shape[axis] == full + 1 and codes.shape == x.shape
    parts = [  # (first element, elements, first group, groups, group size) along the axis
        (0, full * group_size, 0, full, group_size),
        (full * group_size, rest, full, 1, rest),
    ]
    for start, length, group_start, groups, part_size in parts:
        if length == 0:
            continue
        piece = x.float().narrow(axis, start, length)
        ref = torchao_reference(piece, PerGroup(axis, part_size), dtype, MAPPINGS[name], F32_EPS)
        what = f"pad {name} {dtype} {granularity} {tuple(x.shape)} elements {start}..{start + length}"
        bitexact(qp.scale.narrow(axis, group_start, groups), ref[0], "scale " + what)
        bitexact(qp.zero_point.narrow(axis, group_start, groups), ref[1], "zero_point " + what)
        bitexact(codes.narrow(axis, start, length), ref[2], "codes " + what)


@given(name=st.sampled_from(SCHEMES), case=cases(TORCHAO_INPUTS))
def test_torchao_profile_equals_torchao_defaults_in_the_input_dtype(
    name: str, case: tuple[torch.Tensor, Granularity, str], bitexact: BitExact
) -> None:
    x, granularity, dtype = case
    check(get_scheme(name, profile="torchao"), x, granularity, dtype, True, bitexact)


def _sweep_granularities(shape: tuple[int, ...], negative: bool) -> list[Granularity]:
    """Per-tensor, then per-channel and every fitting group size on each axis, each axis
    spelled non-negative or negative (the sweep alternates; hypothesis draws both)."""
    out: list[Granularity] = [PerTensor()]
    for axis in range(len(shape)):
        spelled = axis - len(shape) if negative else axis
        out.append(PerChannel(spelled))
        out += [PerGroup(spelled, g) for g in GROUP_SIZES if shape[axis] % g == 0]
    return out


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
@pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
def test_every_element_kind_and_float_dtype_equals_torchao(
    kind_index: int, float_index: int, name: str, bitexact: BitExact
) -> None:
    """A fixed sweep, so every edge case runs whatever hypothesis draws: each element kind
    with each input dtype, both profiles, on a rotating shape with every axis (either
    sign), group sizes 32/64/128 where they fit, contiguous or a strided view."""
    kind = mqst.ELEMENT_KINDS[kind_index]
    float_name, float_dtype = list(mqst.FLOAT_DTYPES.items())[float_index]
    shape = SWEEP_SHAPES[(kind_index + float_index) % len(SWEEP_SHAPES)]
    x = mqst.make_tensor(shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1)
    default, torchao = get_scheme(name), get_scheme(name, profile="torchao")
    for granularity in _sweep_granularities(shape, negative=kind_index % 2 == 1):
        for dtype in QDTYPES:
            check(default, x, granularity, dtype, False, bitexact)
            if float_name in TORCHAO_INPUTS:
                check(torchao, x, granularity, dtype, True, bitexact)
