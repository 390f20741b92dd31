"""all-MiniLM-L6-v2, every floating 2-D weight: ``fp8`` equals torchao and compressed-tensors on each.

E4M3 per tensor and per output channel and E5M2 per channel against torchao's
float8 primitives (default profile); E4M3 per channel under the compressed-tensors
profile against compressed-tensors' ``calculate_qparams`` + ``quantize``. Mismatches
are counted over every code, scale and dequantized value.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from mono_quant.conformance.differential import torchao_block_size
from mono_quant.core import Granularity, PerChannel, PerTensor, dequantize, get_scheme, quantize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    primitives = pytest.importorskip("torchao.quantization.quant_primitives")
    ct_quant = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.utils import calculate_qparams

EPS = torch.finfo(torch.float32).eps


def mismatches(a: torch.Tensor, b: torch.Tensor) -> int:
    a, b = a.reshape(-1), b.reshape(-1).to(a.dtype)
    if a.dtype.itemsize == 1:
        return int((a.view(torch.uint8) != b.view(torch.uint8)).sum())
    return int((a.view(torch.int32) != b.view(torch.int32)).sum())


@pytest.mark.parametrize(
    ("dtype", "g"),
    [("float8_e4m3fn", PerTensor()), ("float8_e4m3fn", PerChannel(0)), ("float8_e5m2", PerChannel(0))],
    ids=["e4m3-per-tensor", "e4m3-per-channel", "e5m2-per-channel"],
)
def test_every_weight_equals_torchao(dtype: str, g: Granularity, minilm: dict[str, torch.Tensor]) -> None:
    assert len(minilm) == 40
    fp8 = getattr(torch, dtype)
    scheme = get_scheme("fp8")
    bad = compared = 0
    for name, w in minilm.items():
        qp = scheme.compute_qparams(w, dtype, g, name=name)
        codes = quantize(w, qp, name=name)
        block = list(torchao_block_size(tuple(w.shape), g))
        scale = primitives._choose_scale_float8(w, block, fp8, hp_value_lb=EPS * torch.finfo(fp8).max)
        ref = primitives._quantize_affine_float8(w, scale, fp8)
        assert qp.scale is not None
        bad += mismatches(qp.scale, scale) + mismatches(codes, ref)
        bad += mismatches(dequantize(codes, qp), primitives._dequantize_affine_float8(ref, scale))
        compared += w.numel()
    assert (bad, compared) == (0, 22_682_112)


def test_every_weight_equals_compressed_tensors(minilm: dict[str, torch.Tensor]) -> None:
    scheme = get_scheme("fp8", profile="compressed-tensors")
    args = ct_quant.QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel")
    bad = 0
    for name, w in minilm.items():
        qp = scheme.compute_qparams(w, "float8_e4m3fn", PerChannel(0), name=name)
        scale, zp = calculate_qparams(w.amin(-1, keepdim=True), w.amax(-1, keepdim=True), args)
        ref = ct_quantize(w, scale, zp, args, dtype=torch.float8_e4m3fn)
        assert qp.scale is not None
        bad += mismatches(qp.scale, scale) + mismatches(quantize(w, qp, name=name), ref)
    assert bad == 0
