"""Every error ``asymmetric`` can raise: its type, and the facts its message must carry."""

from __future__ import annotations

import re

import pytest
import torch

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
    UnsupportedGranularityError,
    UnsupportedOptionError,
    get_scheme,
    list_dtypes,
)

SCHEME = get_scheme("asymmetric")
NAME = "encoder.layer.0.attention.self.query.weight"


def _message(info: pytest.ExceptionInfo[BaseException]) -> str:
    return str(info.value)


@pytest.mark.parametrize("float_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(0), PerChannel(-1), PerGroup(-1, 2)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_raises_with_tensor_name_count_and_first_index(
    bad: float, granularity: Granularity, float_dtype: torch.dtype
) -> None:
    x = torch.randn(3, 4).to(float_dtype)
    x[1, 2] = bad
    x[2, 0] = float("nan")
    x[2, 3] = float("-inf")
    with pytest.raises(NonFiniteError) as info:
        SCHEME.compute_qparams(x, "int8", granularity, name=NAME)
    msg = _message(info)
    assert repr(NAME) in msg
    assert "holds 3 non-finite value(s)" in msg
    assert "at index (1, 2)" in msg
    assert f"the first is {bad}" in msg


def test_non_finite_input_to_quantize_raises_too() -> None:
    w = torch.randn(2, 8)
    qp = SCHEME.compute_qparams(w, "int8", PerChannel(0))
    w[0, 5] = float("inf")
    with pytest.raises(NonFiniteError, match=re.escape(f"{NAME!r} holds 1 non-finite value(s)")) as info:
        SCHEME.quantize(w, qp, name=NAME)
    assert "at index (0, 5)" in _message(info)


@pytest.mark.parametrize(
    "granularity", [PerChannel(2), PerChannel(-3), PerGroup(2, 2), PerGroup(-3, 2)], ids=str
)
def test_axis_out_of_range_raises_axis_error_naming_axis_ndim_and_valid_range(
    granularity: Granularity,
) -> None:
    with pytest.raises(AxisError) as info:
        SCHEME.compute_qparams(torch.randn(4, 6), "int8", granularity, name=NAME)
    msg = _message(info)
    assert isinstance(info.value, IndexError)  # callers that catch IndexError keep working
    axis = granularity.axis  # type: ignore[union-attr]
    assert f"axis {axis} is out of range for {NAME!r} with 2 dimension(s)" in msg
    assert "valid axes: [-2, 1]" in msg


def test_granularity_needing_an_axis_on_a_0d_tensor_raises() -> None:
    with pytest.raises(UnsupportedGranularityError, match=re.escape(f"{NAME!r} is 0-d. Use PerTensor()")):
        SCHEME.compute_qparams(torch.tensor(1.5), "int8", PerChannel(0), name=NAME)


@pytest.mark.parametrize("axis", [1, -1])
def test_group_size_that_does_not_divide_raises_with_both_sizes(axis: int) -> None:
    with pytest.raises(GroupSizeError) as info:
        SCHEME.compute_qparams(torch.randn(4, 300), "int8", PerGroup(axis, 128), name=NAME)
    msg = _message(info)
    assert f"group_size must divide dimension 1 of {NAME!r} (size 300); got 128" in msg
    assert "nondivisible='pad'" in msg  # says what to do next


def test_group_size_that_does_not_divide_pads_on_request() -> None:
    x = torch.randn(4, 300)
    scheme = SCHEME.configure(nondivisible="pad")
    qp = scheme.compute_qparams(x, "int8", PerGroup(-1, 128), name=NAME)
    assert qp.scale is not None
    assert tuple(qp.scale.shape) == (4, 3)  # 128 + 128 + a partial group of 44
    tail = SCHEME.compute_qparams(x[:, 256:], "int8", PerChannel(0))
    assert tail.scale is not None
    assert torch.equal(qp.scale[:, 2], tail.scale)  # the partial group's range is its own
    codes = scheme.quantize(x, qp, name=NAME)
    assert codes.shape == x.shape


@pytest.mark.parametrize("size", [0, -1])
def test_group_size_below_one_raises(size: int) -> None:
    with pytest.raises(GroupSizeError, match=re.escape(f"group_size must be a positive int, got {size}")):
        PerGroup(-1, size)


def test_unknown_dtype_raises_listing_registered_dtypes() -> None:
    with pytest.raises(UnknownDtypeError) as info:
        SCHEME.compute_qparams(torch.randn(4), "int3")
    msg = _message(info)
    assert "'int3' is not a registered quant dtype" in msg
    assert all(name in msg for name in list_dtypes())


def test_int4_without_mono_quant_int4_names_the_distribution() -> None:
    if "int4" in list_dtypes():
        pytest.skip("mono-quant-int4 is installed, so 'int4' is registered (checked when installed alone)")
    with pytest.raises(UnknownDtypeError, match="Install mono-quant-int4 to use it"):
        SCHEME.compute_qparams(torch.randn(4), "int4")


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
def test_non_floating_input_raises_input_dtype_error(x: torch.Tensor, fact: str) -> None:
    with pytest.raises(InputDtypeError) as info:
        SCHEME.compute_qparams(x, "int8", name=NAME)
    assert isinstance(info.value, TypeError)
    msg = _message(info)
    assert f"{NAME!r} must be floating point" in msg and fact in msg


def test_non_tensor_input_raises_input_dtype_error() -> None:
    with pytest.raises(InputDtypeError, match=re.escape(f"{NAME!r} must be a torch.Tensor, got list")):
        SCHEME.compute_qparams([1.0, 2.0], "int8", name=NAME)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
def test_empty_input_raises_with_its_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(EmptyTensorError, match=re.escape(f"{NAME!r} is empty (shape {shape})")):
        SCHEME.compute_qparams(torch.ones(shape), "int8", PerTensor(), name=NAME)


def test_unsupported_granularity_object_raises() -> None:
    with pytest.raises(UnsupportedGranularityError, match="got 'per_tensor'"):
        SCHEME.compute_qparams(torch.ones(3), "int8", "per_tensor")  # type: ignore[arg-type]


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
def test_unknown_option_raises_naming_what_is_accepted(options: dict[str, object], fact: str) -> None:
    with pytest.raises(UnsupportedOptionError, match=re.escape(fact)):
        get_scheme("asymmetric", **options)


def test_qparams_of_another_tensor_raise_with_both_shapes() -> None:
    qp = SCHEME.compute_qparams(torch.randn(4, 6), "int8", PerChannel(0))
    with pytest.raises(QParamsError) as info:
        SCHEME.quantize(torch.randn(5, 6), qp, name=NAME)
    msg = _message(info)
    assert f"qparams do not fit {NAME!r}" in msg and "needs scale/zero_point of shape (5,)" in msg
    assert "got (4,)" in msg


def test_every_error_is_a_mono_quant_error_and_a_value_error() -> None:
    for exc in (AxisError, EmptyTensorError, GroupSizeError, InputDtypeError, NonFiniteError, QParamsError):
        assert issubclass(exc, MonoQuantError) and issubclass(exc, ValueError)
