"""The public strategies: specs that rebuild their tensors, finite values, the stable API."""

from __future__ import annotations

import torch
from hypothesis import given

from mono_quant.conformance import strategies as mqst
from mono_quant.conformance.strategies import TensorSpec, make_tensor


@given(mqst.tensor_specs())
def test_a_spec_prints_the_call_that_rebuilds_its_tensor(spec: TensorSpec) -> None:
    rebuilt = eval(str(spec), {"make_tensor": make_tensor, "torch": torch})
    assert torch.equal(rebuilt, spec.make())
    assert rebuilt.dtype == spec.dtype and tuple(rebuilt.shape) == spec.shape


@given(mqst.tensor_specs(dtypes=mqst.float_dtypes(["float16"])))
def test_every_kind_stays_finite_even_near_the_dtype_max(spec: TensorSpec) -> None:
    assert bool(torch.isfinite(spec.make()).all())


def test_an_fp16_outlier_saturates_instead_of_overflowing() -> None:
    x = make_tensor((4, 4), torch.float16, kind="outlier", magnitude=1e4)
    assert bool(torch.isfinite(x).all()) and float(x.abs().max()) == float(torch.finfo(torch.float16).max)


@given(mqst.tensors(shapes=mqst.shapes(min_dims=2, max_dims=2), noncontiguous=True))
def test_tensors_keeps_its_api_and_forced_layout(x: torch.Tensor) -> None:
    assert x.dim() == 2 and x.stride(-1) == 2  # a strided view of a wider buffer


def test_the_public_api_other_tests_rely_on_is_still_there() -> None:
    for name in ("tensors", "make_tensor", "granularities", "shapes", "float_dtypes", "quant_dtypes"):
        assert callable(getattr(mqst, name))
    assert set(mqst.FLOAT_DTYPES) == {"float32", "float16", "bfloat16", "float64"}
    assert "ties" in mqst.ELEMENT_KINDS and "constant_rows" in mqst.ELEMENT_KINDS
