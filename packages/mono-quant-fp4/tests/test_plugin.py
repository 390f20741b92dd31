"""mono-quant-fp4 as a plugin: its dtypes and schemes, their defaults, packing and errors.

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
    QParamsError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
    dequantize,
    get_scheme,
    quantize,
    unpack,
)
from mono_quant.fp4 import MXFP4, NVFP4, Mxfp4Scheme

NAME = "model.layers.0.mlp.down_proj.weight"


class TestPluginAlone(PluginAloneSuite):
    dist, plugin, scheme_class, dtypes = "mono-quant-fp4", "fp4", None, ("mxfp4", "nvfp4")
    claims: ClassVar[dict[str, object]] = {"symmetric": True, "granularities": ("per_group",)}
    claims |= {"profiles": {"default", "torchao", "compressed-tensors"}, "nonfinite": ("raise",)}
    claims |= {"nondivisible": ("raise", "pad")}


@pytest.mark.parametrize(("scheme", "block"), [("mxfp4", 32), ("nvfp4", 16)])
def test_defaults_are_the_formats_blocks_along_the_last_axis(scheme: str, block: int) -> None:
    w = torch.randn(4, 64)
    qp = get_scheme(scheme).compute_qparams(w)
    assert qp.dtype == scheme and qp.granularity == PerGroup(1, block)
    assert qp.scale is not None and qp.scale.shape == (4, 64 // block)
    assert qp.zero_point is not None and not bool(qp.zero_point.any())
    packed = quantize(w, qp, pack=True)
    assert packed.dtype == torch.uint8 and packed.shape == (4, 32)
    assert torch.equal(unpack(packed, MXFP4, (4, 64)), quantize(w, qp))
    assert torch.equal(dequantize(packed, qp, shape=(4, 64)), dequantize(quantize(w, qp), qp))


def test_mx_scales_are_powers_of_two_and_nv_scales_are_e4m3_values() -> None:
    w = torch.randn(8, 256) * 0.03
    mx = get_scheme("mxfp4").compute_qparams(w)
    assert mx.scale is not None and bool((torch.frexp(mx.scale).mantissa == 0.5).all())
    nv = get_scheme("nvfp4").compute_qparams(w)
    assert nv.scale is not None and torch.equal(nv.scale.to(torch.float8_e4m3fn).float(), nv.scale)
    assert nv.tensor_scale == float(w.abs().max() / 2688)  # in float32


def test_mxfp4_is_a_scheme_of_its_own_class() -> None:
    assert isinstance(get_scheme("mxfp4"), Mxfp4Scheme)
    assert MXFP4.scale_dtype == "float8_e8m0fnu" and NVFP4.scale_dtype == "float8_e4m3fn"


@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_what_the_schemes_do_not_do_is_refused(scheme: str) -> None:
    w = torch.randn(4, 64)
    with pytest.raises(UnsupportedGranularityError, match="it supports: per_group"):
        get_scheme(scheme).compute_qparams(w, scheme, PerChannel(0))
    other = "nvfp4" if scheme == "mxfp4" else "mxfp4"
    with pytest.raises(UnsupportedDtypeError, match=f"does not support dtype {other!r}"):
        get_scheme(scheme).compute_qparams(w, other)
    with pytest.raises(UnsupportedDtypeError, match="does not support dtype 'float8_e4m3fn'"):
        get_scheme(scheme).compute_qparams(w, "float8_e4m3fn")
    with pytest.raises(UnsupportedOptionError, match="does not accept profile 'custom'"):
        get_scheme(scheme, eps=1e-6)
    with pytest.raises(GroupSizeError, match=re.escape(f"dimension 1 of {NAME!r} (size 40)")):
        get_scheme(scheme).compute_qparams(torch.randn(4, 40), name=NAME)


@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_a_partial_last_block_is_padded_on_request(scheme: str) -> None:
    w = torch.randn(3, 40)
    qp = get_scheme(scheme, nondivisible="pad").compute_qparams(w)
    back = dequantize(quantize(w, qp), qp)
    assert back.shape == w.shape and bool(torch.isfinite(back).all())


def test_qparams_that_cannot_quantize_are_refused() -> None:
    qp = get_scheme("nvfp4").compute_qparams(torch.randn(2, 16))
    broken = type(qp)(
        qp.scale, qp.zero_point, "nvfp4", qp.granularity, "nvfp4", extra={"tensor_scale": "0x0p+0"}
    )
    with pytest.raises(QParamsError, match="not finite and > 0"):
        quantize(torch.randn(2, 16), broken, name="w")
