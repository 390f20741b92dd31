"""The scheme contract core enforces around every scheme, and each error's message."""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import (
    AxisError,
    Capabilities,
    EmptyTensorError,
    Granularity,
    GroupSizeError,
    InputDtypeError,
    MinMaxScheme,
    NonFiniteError,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QuantDtype,
    Scheme,
    SchemeContractError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    dequantize,
    quantize,
    symmetric_qparams,
    temporary_dtypes,
)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (torch.ones(3, dtype=torch.int32), "got torch.int32"),
        (torch.ones(3, dtype=torch.bool), "got torch.bool"),
        (torch.ones(3, dtype=torch.complex64), "got torch.complex64"),
        ([1.0, 2.0], "must be a torch.Tensor, got list"),
    ],
)
def test_non_float_input_is_refused_naming_the_tensor(asym: Scheme, x: object, fragment: str) -> None:
    with pytest.raises(InputDtypeError) as info:
        asym.compute_qparams(x, "int8", name="emb.weight")  # type: ignore[arg-type]
    assert "'emb.weight'" in str(info.value) and fragment in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_empty_input_is_refused_with_its_shape(asym: Scheme) -> None:
    with pytest.raises(EmptyTensorError, match=r"'w' is empty \(shape \(0, 4\)\)"):
        asym.compute_qparams(torch.ones(0, 4), "int8", name="w")


def test_non_finite_input_names_the_tensor_count_and_first_index(asym: Scheme) -> None:
    x = torch.zeros(3, 4)
    x[1, 2] = float("nan")
    x[2, 0] = float("-inf")
    with pytest.raises(NonFiniteError) as info:
        asym.compute_qparams(x, "int8", PerChannel(0), name="encoder.0.weight")
    message = str(info.value)
    assert "'encoder.0.weight' holds 2 non-finite value(s)" in message
    assert "the first is nan at index (1, 2)" in message


def test_unsupported_dtype_lists_what_the_scheme_supports() -> None:
    class Only8(Scheme):
        name = "only8"
        version = "1"
        capabilities = Capabilities(dtypes=("int8",))

        def compute_scale_zero_point(
            self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            raise AssertionError("not reached")

    with pytest.raises(UnsupportedDtypeError) as info:
        Only8().compute_qparams(torch.ones(2), "uint8")
    assert "scheme 'only8' does not support dtype 'uint8'; it supports: int8" in str(info.value)


def test_unsupported_granularity_is_refused(sym: Scheme) -> None:
    narrow = sym.configure()
    object.__setattr__(narrow, "capabilities", Capabilities(granularities=("per_tensor",)))
    with pytest.raises(
        UnsupportedGranularityError, match=r"does not support per-channel\(axis=0\); it supports: per_tensor"
    ):
        narrow.compute_qparams(torch.ones(2, 2), "int8", PerChannel(0))


def test_granularities_other_than_the_three_are_refused(asym: Scheme) -> None:
    with pytest.raises(UnsupportedGranularityError, match="must be PerTensor"):
        asym.compute_qparams(torch.ones(2), "int8", "per_tensor")  # type: ignore[arg-type]


def test_zero_d_input_works_per_tensor_only(asym: Scheme) -> None:
    x = torch.tensor(2.5)
    qp = asym.compute_qparams(x, "int8")
    assert qp.scale is not None and qp.scale.shape == ()
    assert dequantize(quantize(x, qp), qp).shape == ()
    with pytest.raises(UnsupportedGranularityError, match=r"is 0-d\. Use PerTensor"):
        asym.compute_qparams(x, "int8", PerChannel(0))


def test_bad_axis_and_group_size_surface_from_compute_qparams(asym: Scheme, sym: Scheme) -> None:
    with pytest.raises(AxisError, match="axis 2 is out of range for 'w' with 2 dimension"):
        asym.compute_qparams(torch.ones(3, 4), "int8", PerChannel(2), name="w")
    with pytest.raises(GroupSizeError, match=r"dimension 1 of 'w' \(size 300\); got 128"):
        sym.compute_qparams(torch.ones(2, 300), "int8", PerGroup(1, 128), name="w")


def test_pad_policy_gives_a_partial_last_group(asym: Scheme) -> None:
    x = torch.arange(10.0).reshape(1, 10)
    qp = asym.configure(nondivisible="pad").compute_qparams(x, "uint8", PerGroup(1, 4))
    assert qp.scale is not None and tuple(qp.scale.shape) == (1, 3)
    assert qp.scale[0, 2].item() == pytest.approx(9.0 / 255)  # last group holds 8, 9 and zero
    assert torch.allclose(dequantize(quantize(x, qp), qp), x, atol=qp.scale.max().item() / 2 + 1e-6)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"profile": "nope"}, "unknown profile 'nope'; known profiles: compressed-tensors, default, torchao"),
        ({"nondivisible": "truncate"}, "does not accept nondivisible='truncate'; it accepts: raise"),
        ({"nonfinite": "ignore"}, "does not accept nonfinite='ignore'; it accepts: raise"),
        ({"eps": 1e-6}, "does not accept profile 'custom' (explicit profile parameters need 'custom')"),
        ({"profile": "torchao"}, "does not accept profile 'torchao'; it accepts: default"),
    ],
)
def test_configure_refuses_options_the_scheme_does_not_declare(
    sym: Scheme, options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(UnsupportedOptionError) as info:
        sym.configure(**options)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_configure_returns_a_new_scheme_and_leaves_the_original(asym: Scheme) -> None:
    custom = asym.configure(eps=1e-4, nondivisible="pad")
    assert custom.profile.name == "custom" and custom.profile.eps == 1e-4
    assert asym.profile.name == "default" and asym.nondivisible == "raise"
    qp = custom.compute_qparams(torch.zeros(3), "int8")
    assert qp.scale is not None and qp.scale.item() == pytest.approx(1e-4) and qp.profile == "custom"


class Broken(Scheme):
    """Returns whatever the test puts in ``result``."""

    name = "broken"
    version = "0"
    result: tuple[object, object] = (None, None)

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.result  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("scale", "zero_point", "fragment"),
    [
        (torch.full((3,), float("nan")), torch.zeros(3, dtype=torch.int32), "scale must be finite and > 0"),
        (torch.zeros(3), torch.zeros(3, dtype=torch.int32), "scale must be finite and > 0"),
        (torch.ones(3), torch.full((3,), 300, dtype=torch.int32), "zero_point must lie in [-128, 127]"),
        (torch.ones(4), torch.zeros(4, dtype=torch.int32), "scale must have shape (3,)"),
        (torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.int32), "scale must be float32"),
        (torch.ones(3), torch.zeros(3, dtype=torch.int64), "zero_point must be int32"),
        (1.0, 0, "must return two tensors"),
    ],
)
def test_a_scheme_that_breaks_the_contract_is_caught(
    scale: object, zero_point: object, fragment: str
) -> None:
    scheme = Broken()
    scheme.result = (scale, zero_point)
    with pytest.raises(SchemeContractError) as info:
        scheme.compute_qparams(torch.ones(3, 2), "int8", PerChannel(0))
    assert fragment in str(info.value) and "scheme 'broken'" in str(info.value)


def test_input_is_not_mutated_and_results_are_deterministic(asym: Scheme) -> None:
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    before = x.clone()
    a = asym.compute_qparams(x, "int8", PerGroup(-1, 8))
    b = asym.compute_qparams(x, "int8", PerGroup(-1, 8))
    qa, qb = quantize(x, a), quantize(x, b)
    assert torch.equal(x, before) and a.equals(b) and torch.equal(qa, qb)


def test_describe_reports_profile_policies_and_capabilities(asym: Scheme) -> None:
    info = asym.configure(nondivisible="pad").describe()
    assert info["name"] == "core-test-asym" and info["nondivisible"] == "pad"
    assert info["capabilities"]["granularities"] == ["per_tensor", "per_channel", "per_group"]  # type: ignore[index]


def test_per_tensor_is_the_default_granularity(asym: Scheme) -> None:
    assert asym.compute_qparams(torch.ones(2, 2)).granularity == PerTensor()


@pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(1), PerGroup(0, 4)])
def test_quantize_tensor_equals_compute_qparams_then_quantize(asym: Scheme, granularity: Granularity) -> None:
    x = torch.randn(8, 12, generator=torch.Generator().manual_seed(9)).to(torch.bfloat16)
    codes, qp = asym.quantize_tensor(x, "uint8", granularity)
    ref = asym.compute_qparams(x, "uint8", granularity)
    assert qp.equals(ref) and torch.equal(codes, quantize(x, ref))


def test_quantize_tensor_still_refuses_non_finite_input(asym: Scheme) -> None:
    with pytest.raises(NonFiniteError, match="'w' holds 1 non-finite"):
        asym.quantize_tensor(torch.tensor([1.0, float("inf")]), "int8", name="w")


def test_a_parameter_that_requires_grad_works_through_every_entry_point(asym: Scheme) -> None:
    values = torch.randn(4, 8, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    param = torch.nn.Parameter(values.clone(), requires_grad=True)
    qp = asym.compute_qparams(param, "int8", PerChannel(0))
    ref = asym.compute_qparams(values, "int8", PerChannel(0))
    assert qp.equals(ref) and qp.scale is not None and not qp.scale.requires_grad
    assert torch.equal(asym.quantize(param, qp), asym.quantize(values, ref))
    assert torch.equal(quantize(param, qp, pack=True), quantize(values, ref, pack=True))
    packed, _ = asym.quantize_tensor(param, "int8", PerChannel(0), pack=True)
    assert torch.equal(packed, asym.quantize_tensor(values, "int8", PerChannel(0), pack=True)[0])
    codes = asym.quantize(values, ref)
    assert not asym.dequantize(codes, qp).requires_grad
    assert param._version == 0 and torch.equal(param.detach(), values)


class _Sym(MinMaxScheme):
    name, version = "core-test-scheme-sym", "0"
    capabilities = Capabilities(symmetric=True)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return symmetric_qparams(lo, hi, dtype, self.profile)


class _RangeIgnoresNaN(_Sym):
    """Overrides the range pass so that NaN never reaches it: quantize must still look."""

    name = "core-test-range-ignores-nan"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return super().compute_scale_zero_point(x.nan_to_num(), dtype, granularity, name=name)


@pytest.mark.parametrize("pack", [False, True])
def test_the_one_call_path_checks_finiteness_unless_core_s_own_range_pass_saw_every_element(
    pack: bool,
) -> None:
    x = torch.ones(2, 8)
    x[1, 3] = float("nan")
    nibbles = QuantDtype("core-test-u4", 4, False, 0, 15, "uint8", packing=Packing(4, 2))
    with (
        temporary_dtypes([nibbles], source="test_scheme"),
        pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite value.*index \(1, 3\)"),
    ):
        _RangeIgnoresNaN().quantize_tensor(
            x, nibbles.name if pack else "int8", PerTensor(), name="w", pack=pack
        )


class _QuantizeOverride(_Sym):
    """An affine scheme that overrides quantize (wrongly): quantize_tensor must show the override's codes."""

    name = "core-test-quantize-override"

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        return super().quantize(x, qparams, name=name).clamp(max=3)


def test_the_default_one_call_path_goes_through_an_overridden_quantize() -> None:
    x = torch.linspace(-1.0, 1.0, 32)
    codes, _ = _QuantizeOverride().quantize_tensor(x, "int8")
    assert int(codes.max()) == 3


def test_capabilities_report_how_much_coarser_than_the_dtype_a_scale_may_be() -> None:
    assert Capabilities().max_step_ratio == 1.0
    assert Capabilities(max_step_ratio=2.0).to_dict()["max_step_ratio"] == 2.0
