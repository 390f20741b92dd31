"""Suites a scheme plugin subclasses: its error messages and its registration when alone."""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch

from mono_quant.conformance._oracles import (
    _FIRST_PARTY_DTYPES,
    FIRST_PARTY,
)
from mono_quant.conformance._suites import _by_scheme
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
    UnknownDtypeError,
    UnknownSchemeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    get_dtype,
    get_scheme,
    list_dtypes,
    list_schemes,
    plugin_report,
    reload_plugins,
)

_NAME = "encoder.layer.0.attention.self.query.weight"


class ErrorSuite:
    """Every error a general-dtype scheme (int8, uint8, ...) can raise.

    Its type, and the facts its message must carry.
    """

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
        with pytest.raises(
            UnsupportedGranularityError, match=re.escape(f"{_NAME!r} is 0-d. Use PerTensor()")
        ):
            get_scheme(scheme_name).compute_qparams(torch.tensor(1.5), "int8", PerChannel(0), name=_NAME)

    @pytest.mark.parametrize("axis", [1, -1])
    def test_group_size_that_does_not_divide_raises_with_both_sizes(
        self, scheme_name: str, axis: int
    ) -> None:
        with pytest.raises(GroupSizeError) as info:
            get_scheme(scheme_name).compute_qparams(
                torch.randn(4, 300), "int8", PerGroup(axis, 128), name=_NAME
            )
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
            pytest.skip(
                "mono-quant-int4 is installed, so 'int4' is registered (checked when installed alone)"
            )
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
    def test_non_floating_input_raises_input_dtype_error(
        self, scheme_name: str, x: torch.Tensor, fact: str
    ) -> None:
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
            (
                {"profile": "tflite"},
                "unknown profile 'tflite'; known profiles: compressed-tensors, default, torchao",
            ),
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
        for exc in (
            AxisError,
            EmptyTensorError,
            GroupSizeError,
            InputDtypeError,
            NonFiniteError,
            QParamsError,
        ):
            assert issubclass(exc, MonoQuantError) and issubclass(exc, ValueError)


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


class PluginAloneSuite:
    """A first-party distribution ``dist`` as a plugin: its schemes and nothing else.

    Checked alone from its wheel or with every other plugin disabled
    (``MONO_QUANT_DISABLE_PLUGINS``); any other first-party scheme names its distribution.
    """

    dist: ClassVar[str] = ""
    #: The plugin's name in :func:`~mono_quant.core.plugin_report` and the dtypes it registers.
    plugin: ClassVar[str] = ""
    dtypes: ClassVar[tuple[str, ...]] = ()
    #: The class every one of our schemes is an instance of (None: not checked).
    scheme_class: ClassVar[type | None] = None
    #: ``Capabilities`` fields every one of our schemes claims; a set compares as a set.
    claims: ClassVar[dict[str, object]] = {}

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

    def test_plugin_report_shows_our_schemes_and_dtypes(self) -> None:
        records = [p for p in plugin_report().plugins if p.distribution == self.dist]
        assert [(p.name, p.status, tuple(p.schemes), tuple(p.dtypes), p.error) for p in records] == [
            (self.plugin, "loaded", FIRST_PARTY[self.dist], self.dtypes, None)
        ]
        assert records[0].version == md.version(self.dist)

    def test_our_schemes_carry_our_distribution_and_version(self) -> None:
        for name in self.own_schemes:
            scheme = get_scheme(name)
            assert scheme.name == name
            if self.scheme_class is not None:
                assert isinstance(scheme, self.scheme_class), f"{name}: {type(scheme).__name__}"
            assert (scheme.distribution, scheme.version) == (self.dist, md.version(self.dist))

    def test_our_schemes_claim_their_capabilities(self) -> None:
        for name in self.own_schemes:
            caps = get_scheme(name).capabilities
            for field, want in self.claims.items():
                got = getattr(caps, field)
                assert (set(got) if isinstance(want, set) else got) == want, f"{name}: capabilities.{field}"

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
        if "dtype_dist" in metafunc.fixturenames:
            dtypes: list[Any] = [
                (t, d) for d, ts in _FIRST_PARTY_DTYPES.items() if d != self.dist for t in ts
            ]
            skip = pytest.mark.skip(reason="no other first-party plugin registers a dtype")
            metafunc.parametrize(("dtype", "dtype_dist"), dtypes or [pytest.param(None, None, marks=skip)])

    @pytest.mark.usefixtures("alone")
    def test_asking_for_another_first_party_dtype_names_its_distribution(
        self, dtype: str, dtype_dist: str
    ) -> None:
        with pytest.raises(UnknownDtypeError) as info:
            get_dtype(dtype)
        installed = dtype_dist in self.installed_others()
        hint = f"{dtype_dist} is installed but disabled" if installed else f"Install {dtype_dist}"
        assert hint in str(info.value)

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
