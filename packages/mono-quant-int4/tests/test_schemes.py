"""The group-wise int4 schemes: W4A16 defaults and the zero-point rules, checked directly."""

from __future__ import annotations

import pytest
import torch

from mono_quant.conformance import strategies as mqst
from mono_quant.core import PerChannel, PerGroup, PerTensor, dequantize, get_scheme
from mono_quant.int4 import DEFAULT_GROUP_SIZE, Int4AsymmetricScheme, Int4SymmetricScheme

SCHEMES = ["int4-symmetric", "int4-asymmetric"]


@pytest.mark.parametrize("name", SCHEMES)
def test_defaults_are_int4_in_groups_of_128_along_the_input_axis(name: str) -> None:
    scheme = get_scheme(name)
    assert DEFAULT_GROUP_SIZE == 128
    assert scheme.capabilities.default_dtype == "int4"
    assert scheme.capabilities.default_granularity == PerGroup(-1, 128)
    w = mqst.make_tensor((24, 512), seed=1)  # a Linear weight: (out_features, in_features)
    qp = scheme.compute_qparams(w)
    assert qp.scale is not None and qp.zero_point is not None
    assert (qp.dtype, qp.granularity, tuple(qp.scale.shape)) == ("int4", PerGroup(1, 128), (24, 4))
    assert qp.scale.dtype == torch.float32 and qp.zero_point.dtype == torch.int32


@pytest.mark.parametrize("name", SCHEMES)
def test_each_group_gets_the_qparams_of_its_own_128_elements(name: str) -> None:
    scheme = get_scheme(name)
    w = mqst.make_tensor((5, 384), kind="outlier", seed=2)
    qp = scheme.compute_qparams(w)
    assert qp.scale is not None and qp.zero_point is not None
    for g in range(3):
        alone = scheme.compute_qparams(w[:, 128 * g : 128 * (g + 1)], "int4", PerChannel(0))
        assert alone.scale is not None and alone.zero_point is not None
        assert torch.equal(qp.scale[:, g], alone.scale)
        assert torch.equal(qp.zero_point[:, g], alone.zero_point)


@pytest.mark.parametrize(("dtype", "zero_point"), [("int4", 0), ("uint4", 8)])
def test_symmetric_zero_point_is_0_signed_and_8_unsigned(dtype: str, zero_point: int) -> None:
    w = mqst.make_tensor((4, 256), kind="positive", seed=3)
    qp = get_scheme("int4-symmetric").compute_qparams(w, dtype)
    assert qp.zero_point is not None
    assert set(qp.zero_point.flatten().tolist()) == {zero_point}


@pytest.mark.parametrize(("dtype", "lo", "hi"), [("int4", -8, 7), ("uint4", 0, 15)])
@pytest.mark.parametrize("kind", ["normal", "positive", "negative", "zeros", "constant_rows"])
def test_asymmetric_zero_point_and_codes_stay_in_range_and_zero_is_exact(
    kind: str, dtype: str, lo: int, hi: int
) -> None:
    scheme = get_scheme("int4-asymmetric")
    w = mqst.make_tensor((4, 256), kind=kind, seed=4)
    w[0, 0] = 0.0
    qp = scheme.compute_qparams(w, dtype)
    codes = scheme.quantize(w, qp)
    assert qp.zero_point is not None
    assert bool(((qp.zero_point >= lo) & (qp.zero_point <= hi)).all())
    assert bool(((codes >= lo) & (codes <= hi)).all())
    assert float(dequantize(codes, qp)[0, 0]) == 0.0


@pytest.mark.parametrize("name", SCHEMES)
def test_round_trip_error_is_at_most_half_a_scale(name: str) -> None:
    scheme = get_scheme(name)
    w = mqst.make_tensor((8, 256), kind="uniform", seed=5)
    qp = scheme.compute_qparams(w)
    assert qp.scale is not None
    error = (dequantize(scheme.quantize(w, qp), qp) - w).abs()
    bound = qp.scale.repeat_interleave(128, dim=1) / 2
    assert bool((error <= bound * (1 + 1e-6)).all())


@pytest.mark.parametrize("name", SCHEMES)
def test_per_channel_and_per_tensor_are_offered_too(name: str) -> None:
    scheme = get_scheme(name)
    w = mqst.make_tensor((6, 10), seed=6)
    for granularity, shape in ((PerChannel(0), (6,)), (PerTensor(), ())):
        qp = scheme.compute_qparams(w, "int4", granularity)
        assert qp.scale is not None and tuple(qp.scale.shape) == shape


def test_the_scheme_classes_are_what_the_registry_hands_out() -> None:
    assert isinstance(get_scheme("int4-symmetric"), Int4SymmetricScheme)
    assert isinstance(get_scheme("int4-asymmetric"), Int4AsymmetricScheme)
    assert get_scheme("int4-symmetric").capabilities.symmetric
    assert not get_scheme("int4-asymmetric").capabilities.symmetric
