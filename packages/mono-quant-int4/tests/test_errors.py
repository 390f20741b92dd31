"""Every error the int4 schemes can raise: its type, and the facts its message must carry."""

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
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    get_scheme,
)

SCHEMES = ["int4-symmetric", "int4-asymmetric"]
NAME = "model.layers.0.mlp.down_proj.weight"


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32"])
@pytest.mark.parametrize("name", SCHEMES)
def test_a_dtype_other_than_int4_uint4_raises_listing_what_is_supported(name: str, dtype: str) -> None:
    with pytest.raises(UnsupportedDtypeError) as info:
        get_scheme(name).compute_qparams(torch.randn(2, 128), dtype)
    assert str(info.value) == (
        f"scheme {name!r} does not support dtype {dtype!r}; it supports: int4, uint4 "
        f"(and the float targets float16, bfloat16)."
    )


@pytest.mark.parametrize("name", SCHEMES)
def test_the_default_group_on_an_input_axis_it_does_not_divide_raises_with_both_sizes(name: str) -> None:
    with pytest.raises(GroupSizeError) as info:
        get_scheme(name).compute_qparams(torch.randn(8, 300), name=NAME)
    msg = str(info.value)
    assert f"group_size must divide dimension 1 of {NAME!r} (size 300); got 128" in msg
    assert "nondivisible='pad'" in msg


@pytest.mark.parametrize("name", SCHEMES)
def test_pad_gives_a_partial_last_group(name: str) -> None:
    scheme = get_scheme(name, nondivisible="pad")
    w = torch.randn(8, 300)
    qp = scheme.compute_qparams(w, name=NAME)
    assert qp.scale is not None and tuple(qp.scale.shape) == (8, 3)
    tail = scheme.compute_qparams(w[:, 256:], "int4", PerChannel(0))
    assert tail.scale is not None and tail.zero_point is not None and qp.zero_point is not None
    assert torch.equal(qp.scale[:, 2], tail.scale) and torch.equal(qp.zero_point[:, 2], tail.zero_point)
    assert scheme.quantize(w, qp).shape == (8, 300)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", SCHEMES)
def test_non_finite_input_raises_with_tensor_name_count_and_first_index(name: str, bad: float) -> None:
    w = torch.randn(4, 256)
    w[2, 200] = bad
    w[3, 1] = bad
    with pytest.raises(NonFiniteError) as info:
        get_scheme(name).compute_qparams(w, name=NAME)
    msg = str(info.value)
    assert f"{NAME!r} holds 2 non-finite value(s)" in msg
    assert f"the first is {bad} at index (2, 200)" in msg


@pytest.mark.parametrize("granularity", [PerGroup(2, 128), PerGroup(-3, 128), PerChannel(5)], ids=str)
@pytest.mark.parametrize("name", SCHEMES)
def test_axis_out_of_range_raises_naming_axis_ndim_and_valid_range(
    name: str, granularity: Granularity
) -> None:
    with pytest.raises(AxisError) as info:
        get_scheme(name).compute_qparams(torch.randn(4, 256), "int4", granularity, name=NAME)
    axis = granularity.axis  # type: ignore[union-attr]
    msg = str(info.value)
    assert f"axis {axis} is out of range for {NAME!r} with 2 dimension(s); valid axes: [-2, 1]" in msg


@pytest.mark.parametrize("name", SCHEMES)
def test_a_0d_input_with_the_default_group_granularity_raises(name: str) -> None:
    with pytest.raises(UnsupportedGranularityError, match=re.escape(f"{NAME!r} is 0-d. Use PerTensor()")):
        get_scheme(name).compute_qparams(torch.tensor(0.5), name=NAME)


@pytest.mark.parametrize(
    ("x", "error", "fact"),
    [
        (torch.ones(2, 128, dtype=torch.int8), InputDtypeError, "got torch.int8"),
        (torch.ones(2, 128, dtype=torch.bool), InputDtypeError, "got torch.bool"),
        (torch.ones(2, 128, dtype=torch.complex64), InputDtypeError, "got torch.complex64"),
        (torch.ones(0, 128), EmptyTensorError, "is empty (shape (0, 128))"),
    ],
    ids=["int8", "bool", "complex64", "empty"],
)
@pytest.mark.parametrize("name", SCHEMES)
def test_unquantizable_input_raises(name: str, x: torch.Tensor, error: type[Exception], fact: str) -> None:
    with pytest.raises(error) as info:
        get_scheme(name).compute_qparams(x, name=NAME)
    assert repr(NAME) in str(info.value) and fact in str(info.value)


@pytest.mark.parametrize("name", SCHEMES)
def test_unknown_options_raise(name: str) -> None:
    with pytest.raises(
        UnsupportedOptionError, match="does not accept nondivisible='drop'; it accepts: raise, pad"
    ):
        get_scheme(name, nondivisible="drop")
    with pytest.raises(UnsupportedOptionError, match="unknown profile 'gptq'"):
        get_scheme(name, profile="gptq")


def test_per_tensor_needs_no_axis_and_works_on_0d() -> None:
    qp = get_scheme("int4-symmetric").compute_qparams(torch.tensor(-2.0), "int4", PerTensor())
    assert qp.scale is not None and torch.equal(qp.scale, torch.tensor(2.0) / 7.5)  # float32 math
