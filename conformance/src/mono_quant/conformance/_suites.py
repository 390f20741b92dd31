"""Suites a scheme plugin subclasses: bit-exactness against torchao, torch.ao and MiniLM."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance._oracles import (
    _GROUP_SIZES,
    _OBSERVER_DTYPES,
    _TORCHAO_INPUTS,
    F32_EPS,
    TORCHAO_DTYPES,
    _torchao,
    assert_bitexact,
    torch_ao_reference,
    torchao_reference,
)
from mono_quant.core import (
    Granularity,
    MonoQuantError,
    PerChannel,
    PerGroup,
    PerTensor,
    Scheme,
    get_dtype,
    get_scheme,
    list_dtypes,
    pack,
)


def _by_scheme(metafunc: pytest.Metafunc, schemes: tuple[str, ...]) -> None:
    if "scheme_name" in metafunc.fixturenames:
        metafunc.parametrize("scheme_name", schemes)


def _torchao_dtypes(scheme: Scheme) -> list[str]:
    """The dtypes both torchao and ``scheme`` know, among those registered."""
    allowed = scheme.capabilities.dtypes
    return [d for d in TORCHAO_DTYPES if d in list_dtypes() and (allowed is None or d in allowed)]


@st.composite
def _cases(draw: st.DrawFn, dtypes: list[str], float_dtypes: tuple[str, ...] | None = None) -> Any:
    """Any tensor, any granularity the shared strategies draw for it, any of ``dtypes``."""
    names = list(float_dtypes) if float_dtypes else None
    x = draw(mqst.tensors(dtypes=mqst.float_dtypes(names)), label="x")
    return x, draw(mqst.granularities(tuple(x.shape))), draw(st.sampled_from(dtypes))


@st.composite
def _group_cases(draw: st.DrawFn, dtypes: list[str], remainder: bool = False) -> Any:
    """Group sizes 32/64/128 on any axis.

    A small shape whose group axis is stretched to a multiple of the group size
    (plus a remainder 1..gs-1 when ``remainder``).
    """
    shape = list(draw(mqst.shapes(max_side=5)))
    axis = draw(st.integers(0, len(shape) - 1))
    group_size = draw(st.sampled_from(_GROUP_SIZES))
    extra = draw(st.integers(1, group_size - 1)) if remainder else 0
    shape[axis] = group_size * draw(st.integers(0 if remainder else 1, 3)) + extra
    x = draw(mqst.tensors(shapes=st.just(tuple(shape))), label="x")
    signed_axis = axis - len(shape) if draw(st.booleans()) else axis
    return x, PerGroup(signed_axis, group_size), draw(st.sampled_from(dtypes))


def _sweep_granularities(shape: tuple[int, ...], negative: bool) -> list[Granularity]:
    """Per-tensor, then per-channel and every fitting group size on each axis.

    Each axis is spelled non-negative or negative (the sweep alternates; hypothesis draws both).
    """
    out: list[Granularity] = [PerTensor()]
    for axis in range(len(shape)):
        spelled = axis - len(shape) if negative else axis
        out.append(PerChannel(spelled))
        out += [PerGroup(spelled, g) for g in _GROUP_SIZES if shape[axis] % g == 0]
    return out


class TorchaoSuite:
    """Each of ``schemes`` equals torchao 0.18's ``choose_qparams_affine`` + ``quantize_affine``.

    Default profile: oracle with ``eps=F32_EPS`` on ``x.float()``; ``torchao`` profile:
    oracle with its defaults (``eps=None``) on ``x`` itself. Scale, zero-point and codes
    (from ``quantize`` and ``quantize_tensor``) are compared, and with ``packed`` the bytes
    of ``quantize_tensor(pack=True)``, for every dtype torchao and the scheme both know.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    #: Also compare ``quantize_tensor(pack=True)`` with ``pack`` of the checked codes.
    packed: ClassVar[bool] = False
    #: The fixed sweep: 1-D..4-D, with axes long enough for every group size somewhere.
    sweep_shapes: ClassVar[tuple[tuple[int, ...], ...]] = (
        (7,), (256,), (5, 6), (3, 128), (64, 4), (3, 4, 5), (2, 96, 3), (2, 3, 4, 5), (2, 32, 2, 3),
    )  # fmt: skip

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _by_scheme(metafunc, self.schemes)

    @pytest.fixture(autouse=True)
    def _torchao_imported(self) -> None:
        """Import torchao (or skip) before the examples: its import is no example's deadline."""
        _torchao()

    def check(
        self, scheme: Scheme, x: torch.Tensor, granularity: Granularity | None, dtype: str | None
    ) -> None:
        """Compare ``scheme`` (its defaults where ``granularity``/``dtype`` are None) with torchao."""
        torchao_profile = scheme.profile.name == "torchao"
        oracle_input, eps = (x, None) if torchao_profile else (x.float(), F32_EPS)
        caps = scheme.capabilities
        used_granularity = granularity if granularity is not None else caps.default_granularity
        used_dtype = dtype if dtype is not None else caps.default_dtype
        scale, zero_point, ref_codes = torchao_reference(
            oracle_input, used_granularity, used_dtype, caps.symmetric, eps
        )
        what = (
            f"{scheme.name} {scheme.profile.name} {used_dtype} {used_granularity} {x.dtype} {tuple(x.shape)}"
        )
        if not bool(torch.isfinite(scale).all()):
            # The range overflows the compute dtype (fp16 input, torchao profile: hi - lo > 65504).
            # torchao returns an infinite scale; QParams must be finite, so we raise instead.
            with pytest.raises(MonoQuantError):
                scheme.compute_qparams(x, dtype, granularity)
            return
        qp = scheme.compute_qparams(x, dtype, granularity)
        codes = scheme.quantize(x, qp)
        assert qp.scale is not None and qp.zero_point is not None
        assert_bitexact(qp.scale, scale, "scale " + what)
        assert_bitexact(qp.zero_point, zero_point, "zero_point " + what)
        assert_bitexact(codes, ref_codes, "codes " + what)
        one_pass, _ = scheme.quantize_tensor(x, dtype, granularity)
        assert_bitexact(one_pass, ref_codes, "quantize_tensor codes " + what)
        if self.packed:
            fused, _ = scheme.quantize_tensor(x, dtype, granularity, pack=True)  # nibbles packed in the loop
            assert_bitexact(fused, pack(codes, get_dtype(qp.dtype)), "quantize_tensor(pack=True) " + what)

    # Each hypothesis test builds its @given function per call: pytest runs every
    # parametrization on a fresh instance, which hypothesis rejects for a @given method.
    def test_default_profile_equals_torchao_with_float32_eps(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name)

        @given(case=_cases(_torchao_dtypes(scheme)))
        def run(case: tuple[torch.Tensor, Granularity, str]) -> None:
            self.check(scheme, *case)

        run()

    def test_default_profile_equals_torchao_for_group_sizes_32_64_128(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name)

        @given(case=_group_cases(_torchao_dtypes(scheme)))
        def run(case: tuple[torch.Tensor, Granularity, str]) -> None:
            self.check(scheme, *case)

        run()

    def test_pad_policy_equals_torchao_on_the_full_groups_and_on_the_partial_group(
        self, scheme_name: str
    ) -> None:
        """``nondivisible="pad"``: full groups are torchao's, the partial one is its own group.

        The last, partial group is quantized as a group of its own (its min/max are its
        own elements).
        """
        scheme = get_scheme(scheme_name, nondivisible="pad")
        given(case=_group_cases(_torchao_dtypes(scheme), remainder=True))(self._check_pad)(scheme)

    @staticmethod
    def _check_pad(scheme: Scheme, case: tuple[torch.Tensor, PerGroup, str]) -> None:
        x, granularity, dtype = case
        scheme_name = scheme.name
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
            ref = torchao_reference(
                piece, PerGroup(axis, part_size), dtype, scheme.capabilities.symmetric, F32_EPS
            )
            what = (
                f"pad {scheme_name} {dtype} {granularity} {tuple(x.shape)} elements {start}..{start + length}"
            )
            assert_bitexact(qp.scale.narrow(axis, group_start, groups), ref[0], "scale " + what)
            assert_bitexact(qp.zero_point.narrow(axis, group_start, groups), ref[1], "zero_point " + what)
            assert_bitexact(codes.narrow(axis, start, length), ref[2], "codes " + what)

    def test_torchao_profile_equals_torchao_defaults_in_the_input_dtype(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name, profile="torchao")

        @given(case=_cases(_torchao_dtypes(scheme), _TORCHAO_INPUTS))
        def run(case: tuple[torch.Tensor, Granularity, str]) -> None:
            self.check(scheme, *case)

        run()

    @pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
    @pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
    def test_every_element_kind_and_float_dtype_equals_torchao(
        self, kind_index: int, float_index: int, scheme_name: str
    ) -> None:
        """A fixed sweep, so every edge case runs whatever hypothesis draws.

        Each element kind with each input dtype, both profiles, on a rotating shape with
        every axis (either sign), group sizes 32/64/128 where they fit, contiguous or a
        strided view.
        """
        kind = mqst.ELEMENT_KINDS[kind_index]
        float_name, float_dtype = list(mqst.FLOAT_DTYPES.items())[float_index]
        shape = self.sweep_shapes[(kind_index + float_index) % len(self.sweep_shapes)]
        x = mqst.make_tensor(
            shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1
        )
        default, torchao = get_scheme(scheme_name), get_scheme(scheme_name, profile="torchao")
        for granularity in _sweep_granularities(shape, negative=kind_index % 2 == 1):
            for dtype in _torchao_dtypes(default):
                self.check(default, x, granularity, dtype)
                if float_name in _TORCHAO_INPUTS:
                    self.check(torchao, x, granularity, dtype)


@st.composite
def _observer_cases(draw: st.DrawFn) -> Any:
    x = draw(mqst.tensors(), label="x")
    granularity = draw(mqst.granularities(tuple(x.shape), kinds=("per_tensor", "per_channel")))
    return x, granularity, draw(mqst.quant_dtypes(names=list(_OBSERVER_DTYPES))).name


class ObserverSuite:
    """The default profile of each of ``schemes`` equals torch.ao bit for bit.

    Scale and zero-point from torch.ao's observers, codes from its decomposed quantize
    ops, on int8/uint8 (see :func:`torch_ao_reference`).
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    sweep_shapes: ClassVar[tuple[tuple[int, ...], ...]] = ((7,), (5, 6), (3, 4, 5), (2, 3, 4, 5))

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _by_scheme(metafunc, self.schemes)

    @staticmethod
    def check(scheme: Scheme, x: torch.Tensor, dtype: str, granularity: Granularity, what: str) -> None:
        qp = scheme.compute_qparams(x, dtype, granularity)
        scale, zero_point, codes = torch_ao_reference(x, dtype, granularity, scheme.capabilities.symmetric)
        assert qp.scale is not None and qp.zero_point is not None
        what = f"{scheme.name} {dtype} {granularity} {what}"
        assert_bitexact(qp.scale, scale, "scale " + what)
        assert_bitexact(qp.zero_point, zero_point, "zero_point " + what)
        assert_bitexact(scheme.quantize(x, qp), codes, "codes " + what)

    def test_scale_and_zero_point_equal_torch_ao_observers(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name)  # @given per call: see TorchaoSuite

        @given(case=_observer_cases())
        def run(case: tuple[torch.Tensor, Granularity, str]) -> None:
            x, granularity, dtype = case
            self.check(scheme, x, dtype, granularity, str(x.dtype))

        run()

    @pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
    @pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
    def test_every_element_kind_and_float_dtype_equals_torch_ao(
        self, kind_index: int, float_index: int, scheme_name: str
    ) -> None:
        """A fixed sweep, so every edge case runs whatever hypothesis draws.

        Each element kind with each input dtype, on a shape rotating through 1-D..4-D,
        every axis (both signs), contiguous or a strided view.
        """
        kind = mqst.ELEMENT_KINDS[kind_index]
        float_dtype = list(mqst.FLOAT_DTYPES.values())[float_index]
        shape = self.sweep_shapes[(kind_index + float_index) % len(self.sweep_shapes)]
        x = mqst.make_tensor(
            shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1
        )
        grans: list[Granularity] = [PerTensor(), *(PerChannel(a) for a in range(-len(shape), len(shape)))]
        for granularity in grans:
            for dtype in _OBSERVER_DTYPES:
                self.check(get_scheme(scheme_name), x, dtype, granularity, f"{kind} {float_dtype} {shape}")


class MiniLMSuite:
    """all-MiniLM-L6-v2, every floating 2-D weight, against torch.ao and torchao.

    int8/uint8 per output channel equal torch.ao; int4/uint4 in groups of 128 along the
    input axis equal torchao (when mono-quant-int4 registers those dtypes). Needs the
    ``minilm`` fixture.
    """

    schemes: ClassVar[tuple[str, ...]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _by_scheme(metafunc, self.schemes)

    @pytest.mark.parametrize("dtype", ["int8", "uint8"])
    def test_int8_per_channel_equals_torch_ao_on_every_weight(
        self, minilm: dict[str, torch.Tensor], scheme_name: str, dtype: str
    ) -> None:
        assert len(minilm) == 40  # 3 embeddings, 6 layers x 6 Linear weights, the pooler
        scheme = get_scheme(scheme_name)
        for name, w in minilm.items():
            qp = scheme.compute_qparams(w, dtype, PerChannel(0), name=name)
            scale, zero_point, codes = torch_ao_reference(
                w, dtype, PerChannel(0), scheme.capabilities.symmetric
            )
            assert qp.scale is not None and qp.zero_point is not None
            assert_bitexact(qp.scale, scale, f"{scheme_name} {dtype} {name} scale")
            assert_bitexact(qp.zero_point, zero_point, f"{scheme_name} {dtype} {name} zero_point")
            assert_bitexact(scheme.quantize(w, qp, name=name), codes, f"{scheme_name} {dtype} {name} codes")

    @pytest.mark.parametrize("dtype", ["int4", "uint4"])
    def test_int4_group_128_equals_torchao_on_every_weight(
        self, minilm: dict[str, torch.Tensor], scheme_name: str, dtype: str
    ) -> None:
        if dtype not in list_dtypes():
            pytest.skip(f"{dtype!r} is not registered: mono-quant-int4 is not installed")
        scheme = get_scheme(scheme_name)
        for name, w in minilm.items():
            qp = scheme.compute_qparams(w, dtype, PerGroup(-1, 128), name=name)
            ref = torchao_reference(w, PerGroup(-1, 128), dtype, scheme.capabilities.symmetric, F32_EPS)
            assert qp.scale is not None and qp.zero_point is not None
            assert tuple(qp.scale.shape) == (w.shape[0], w.shape[1] // 128)
            assert_bitexact(qp.scale, ref[0], f"{scheme_name} {dtype} {name} scale")
            assert_bitexact(qp.zero_point, ref[1], f"{scheme_name} {dtype} {name} zero_point")
            assert_bitexact(scheme.quantize(w, qp, name=name), ref[2], f"{scheme_name} {dtype} {name} codes")


def assert_torchao_profile_differs_from_default(scheme_name: str) -> None:
    """The ``torchao`` profile of ``scheme_name`` is not the default profile twice.

    On bf16 input torchao's math in bf16 rounds scales the float32 default keeps exact,
    and its eps floor is far lower.

    Both are checked against torchao itself on int8; skips when torchao is missing.
    """
    default, torchao = get_scheme(scheme_name), get_scheme(scheme_name, profile="torchao")
    bf16 = torch.tensor([1.0, 1.0078125, -0.5, 0.25], dtype=torch.bfloat16)
    tiny = torch.full((4,), 1e-30)
    for x in (bf16, tiny):
        d, t = default.compute_qparams(x, "int8"), torchao.compute_qparams(x, "int8")
        ref = torchao_reference(x, PerTensor(), "int8", default.capabilities.symmetric, None)[0]
        assert d.scale is not None and t.scale is not None
        assert torch.equal(t.scale, ref.float()), f"{scheme_name} torchao profile {x.dtype}"
        assert not torch.equal(d.scale, t.scale), f"{scheme_name} profiles agree on {x.dtype}"
    assert d.scale is not None and t.scale is not None
    assert float(d.scale) == F32_EPS and 0 < float(t.scale) < 1e-31  # tiny: floored vs its own range
