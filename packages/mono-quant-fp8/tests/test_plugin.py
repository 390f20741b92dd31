"""mono-quant-fp8 as a plugin: it registers ``fp8`` (its dtypes are core's), and its errors say what is wrong.

``nox -s tests`` installs this distribution alone from its wheel; in a workspace with
every plugin installed :class:`~mono_quant.conformance.differential.PluginAloneSuite`
checks the same by disabling the others.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
import torch

from mono_quant.conformance.differential import PluginAloneSuite
from mono_quant.core import (
    GroupSizeError,
    PerChannel,
    PerGroup,
    PerTensor,
    UnsupportedDtypeError,
    UnsupportedOptionError,
    dequantize,
    get_dtype,
    get_scheme,
    pack,
    quantize,
)
from mono_quant.fp8 import FP8_DTYPES, Fp8Scheme

NAME = "model.layers.0.mlp.down_proj.weight"


class TestPluginAlone(PluginAloneSuite):
    dist, plugin, scheme_class = "mono-quant-fp8", "fp8", Fp8Scheme
    claims: ClassVar[dict[str, object]] = {"dtypes": FP8_DTYPES, "symmetric": True, "affine": True}
    claims |= {"profiles": {"default", "torchao", "compressed-tensors", "custom"}, "nonfinite": ("raise",)}
    claims |= {"nondivisible": ("raise", "pad"), "default_dtype": "float8_e4m3fn"}


def test_the_defaults_are_e4m3_one_scale_per_output_channel() -> None:
    qp = get_scheme("fp8").compute_qparams(torch.randn(8, 32))
    assert qp.dtype == "float8_e4m3fn" and qp.granularity == PerChannel(0)
    assert qp.scale is not None and qp.scale.shape == (8,) and qp.scale.dtype == torch.float32
    assert qp.zero_point is not None and qp.zero_point.dtype == torch.int32 and not bool(qp.zero_point.any())


@pytest.mark.parametrize("dtype", FP8_DTYPES)
def test_codes_are_torch_float8_and_unpacked_storage(dtype: str) -> None:
    x = torch.randn(4, 16)
    qp = get_scheme("fp8").compute_qparams(x, dtype)
    codes = quantize(x, qp)
    assert codes.dtype == getattr(torch, dtype) and codes.shape == x.shape
    assert pack(codes, get_dtype(dtype)) is codes  # one byte per code: nothing to pack
    assert torch.equal(dequantize(codes, qp), codes.float() * qp.scale.reshape(-1, 1))  # type: ignore[union-attr]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_an_integer_dtype_is_refused_naming_what_is_supported(dtype: str) -> None:
    with pytest.raises(UnsupportedDtypeError) as info:
        get_scheme("fp8").compute_qparams(torch.randn(2, 8), dtype)
    assert str(info.value) == (
        f"scheme 'fp8' does not support dtype {dtype!r}; it supports: float8_e4m3fn, float8_e5m2 "
        f"(and the float targets float16, bfloat16)."
    )


def test_integer_schemes_do_not_take_fp8_codes() -> None:
    for name in ("symmetric", "asymmetric"):
        try:
            scheme = get_scheme(name)
        except Exception:  # noqa: BLE001 - only when mono-quant-sym/asym is installed here
            continue
        assert not scheme.supports_dtype(get_dtype("float8_e4m3fn"))
        with pytest.raises(UnsupportedDtypeError, match="every affine integer dtype"):
            scheme.compute_qparams(torch.randn(4), "float8_e4m3fn")


def test_a_group_that_does_not_divide_raises_with_both_sizes_or_pads() -> None:
    w = torch.randn(4, 40)
    with pytest.raises(GroupSizeError, match=re.escape(f"dimension 1 of {NAME!r} (size 40); got 16")):
        get_scheme("fp8").compute_qparams(w, "float8_e4m3fn", PerGroup(-1, 16), name=NAME)
    qp = get_scheme("fp8", nondivisible="pad").compute_qparams(w, "float8_e4m3fn", PerGroup(-1, 16))
    tail = get_scheme("fp8").compute_qparams(w[:, 32:], "float8_e4m3fn", PerChannel(0))
    assert qp.scale is not None and tail.scale is not None and torch.equal(qp.scale[:, 2], tail.scale)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(UnsupportedOptionError, match="unknown profile 'fp8-fast'"):
        get_scheme("fp8", profile="fp8-fast")
    with pytest.raises(UnsupportedOptionError, match="nondivisible='drop'"):
        get_scheme("fp8", nondivisible="drop")


def test_a_zero_tensor_gives_the_eps_scale_and_exact_zeros() -> None:
    for g in (PerTensor(), PerChannel(0), PerGroup(-1, 4)):
        qp = get_scheme("fp8").compute_qparams(torch.zeros(3, 8), "float8_e5m2", g)
        assert qp.scale is not None and bool((qp.scale == torch.finfo(torch.float32).eps).all())
        back = dequantize(quantize(torch.zeros(3, 8), qp), qp)
        assert torch.equal(back, torch.zeros(3, 8)) and not bool(torch.signbit(back).any())


def test_float_targets_stay_plain_casts() -> None:
    x = torch.randn(4, 8)
    qp = get_scheme("fp8").compute_qparams(x, "bfloat16")
    assert qp.scale is None and torch.equal(quantize(x, qp), x.to(torch.bfloat16))
