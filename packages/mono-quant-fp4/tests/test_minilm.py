"""all-MiniLM-L6-v2, every floating 2-D weight: ``mxfp4``/``nvfp4`` equal torchao and compressed-tensors.

Default profile against torchao's ``to_mx`` (FLOOR) / ``nvfp4_quantize``; the
compressed-tensors profile against compressed-tensors' ``calculate_qparams`` +
``quantize`` + ``pack_fp4_to_uint8`` on the 37 Linear weights (the ones a
compressed-tensors export holds; embeddings stay unquantized there). Mismatches are counted over every packed
byte and every scale.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from mono_quant.core import get_scheme, quantize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.quant_scheme import MXFP4A16, NVFP4A16
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale


def differ(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.reshape(-1) != b.reshape(-1)).sum())


def test_every_weight_equals_torchao(minilm: dict[str, torch.Tensor]) -> None:
    mx, nv = get_scheme("mxfp4"), get_scheme("nvfp4")
    bad = 0
    for name, w in minilm.items():
        qp = mx.compute_qparams(w, name=name)
        scale, data = mx_tensor.to_mx(w, torch.float4_e2m1fn_x2, 32)
        assert qp.scale is not None
        bad += differ((qp.scale.view(torch.int32) >> 23).to(torch.uint8), scale.view(torch.uint8))
        bad += differ(quantize(w, qp, pack=True), data.view(torch.uint8))
        qp = nv.compute_qparams(w, name=name)
        scale, data = nvfp4_quantize(w, 16, per_tensor_amax_to_scale(w.abs().max()))
        assert qp.scale is not None
        bad += differ(qp.scale, scale.float()) + differ(quantize(w, qp, pack=True), data)
    assert bad == 0


def test_every_weight_equals_compressed_tensors(minilm: dict[str, torch.Tensor]) -> None:
    bad = 0
    for scheme_name, preset, block in (("mxfp4", MXFP4A16, 32), ("nvfp4", NVFP4A16, 16)):
        scheme = get_scheme(scheme_name, profile="compressed-tensors")
        args = preset["weights"]
        for name, w in minilm.items():
            if "embeddings" in name:
                continue  # 12M of the 23M values; compressed-tensors' CPU cast is slow; torchao covers them
            view = w.unflatten(-1, (-1, block))
            g = generate_gparam(w.amin(), w.amax()) if scheme_name == "nvfp4" else None
            scale, zp = calculate_qparams(view.amin(-1), view.amax(-1), args, global_scale=g)
            ref = pack_fp4_to_uint8(ct_quantize(w, scale, zp, args, global_scale=g))
            qp = scheme.compute_qparams(w, name=name)
            assert qp.scale is not None
            bad += differ(qp.scale, scale.float()) + differ(quantize(w, qp, pack=True), ref)
    assert bad == 0
