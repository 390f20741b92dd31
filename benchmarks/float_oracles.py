"""Mismatch counts of the float code schemes against torchao and compressed-tensors on all-MiniLM-L6-v2.

For each scheme, dtype, granularity and profile, every weight of the checkpoint
is quantized by mono-quant and by the reference, and the script counts the
elements whose code, scale or dequantized value differs in any bit (the tests
assert 0; this prints the counts and how many values were compared). The last
rows decode each compressed-tensors export with the library's own decompressor.

Usage (needs mono-quant-fp8, -fp4, torchao 0.18, compressed-tensors 0.20, and
mono-quant for the export rows)::

    python benchmarks/float_oracles.py
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

warnings.filterwarnings("ignore")

from minilm_sqnr import installed_checkpoint  # noqa: E402 - beside this script

from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, get_scheme, quantize  # noqa: E402

Row = tuple[str, str, int, int]


def bits(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous().reshape(-1)
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()])


def differ(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((bits(a) != bits(b.to(a.dtype))).sum())


def fp8_rows(weights: dict[str, torch.Tensor]) -> list[Row]:
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    from torchao.quantization.quant_primitives import _choose_scale_float8, _quantize_affine_float8

    from mono_quant.conformance.differential import torchao_block_size

    rows: list[Row] = []
    eps = torch.finfo(torch.float32).eps
    cases: list[tuple[str, Granularity]] = [
        ("float8_e4m3fn", PerTensor()),
        ("float8_e4m3fn", PerChannel(0)),
        ("float8_e4m3fn", PerGroup(-1, 128)),
        ("float8_e5m2", PerChannel(0)),
        ("float8_e5m2", PerGroup(-1, 128)),
    ]
    for dtype, g in cases:
        fp8, bad, n = getattr(torch, dtype), 0, 0
        for name, w in weights.items():
            qp = get_scheme("fp8").compute_qparams(w, dtype, g, name=name)
            block = list(torchao_block_size(tuple(w.shape), g))
            scale = _choose_scale_float8(w, block, fp8, hp_value_lb=eps * torch.finfo(fp8).max)
            assert qp.scale is not None
            bad += differ(qp.scale, scale) + differ(quantize(w, qp), _quantize_affine_float8(w, scale, fp8))
            n += w.numel()
        rows.append(("torchao float8 primitives", f"fp8 {dtype} {g} (default)", bad, n))
    strategies: list[tuple[str, Granularity, dict[str, object]]] = [
        ("tensor", PerTensor(), {}),
        ("channel", PerChannel(0), {}),
        ("group", PerGroup(-1, 128), {"group_size": 128}),
        ("block [1, 128]", PerGroup(-1, 128), {"block_structure": [1, 128]}),
    ]
    for label, g, extra in strategies:
        strategy = label.split()[0]
        args = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy=strategy, **extra)
        bad, n = 0, 0
        for name, w in weights.items():
            qp = get_scheme("fp8", profile="compressed-tensors").compute_qparams(
                w, "float8_e4m3fn", g, name=name
            )
            if strategy == "tensor":
                lo, hi = w.amin(), w.amax()
            elif strategy == "channel":
                lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
            else:
                view = w.unflatten(-1, (-1, 128))
                lo, hi = view.amin(-1), view.amax(-1)
            scale, zp = calculate_qparams(lo, hi, args)
            assert qp.scale is not None
            ref = ct_quantize(w, scale, zp, args, dtype=torch.float8_e4m3fn)
            bad += differ(qp.scale, scale.float()) + differ(quantize(w, qp), ref)
            n += w.numel()
        rows.append(
            ("compressed-tensors quantize", f"fp8 float8_e4m3fn {label} (compressed-tensors)", bad, n)
        )
    return rows


def fp4_rows(weights: dict[str, torch.Tensor]) -> list[Row]:
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.quant_scheme import MXFP4A16, NVFP4A16
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.kernels import pack_uint4, unpack_uint4
    from torchao.prototype.mx_formats.mx_tensor import to_mx
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

    rows: list[Row] = []
    references: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
        "mxfp4 default": lambda w: to_mx(w, torch.float4_e2m1fn_x2, 32),
        "mxfp4 compressed-tensors (torchao EVEN; -0.0 as +0.0)": lambda w: to_mx(
            w, torch.float4_e2m1fn_x2, 32, scaling_mode=ScaleCalculationMode.EVEN
        ),
        "nvfp4 default": lambda w: nvfp4_quantize(w, 16, per_tensor_amax_to_scale(w.abs().max())),
    }
    for label, ref in references.items():
        scheme_name, profile = label.split()[0], label.split()[1]
        bad, n = 0, 0
        for name, w in weights.items():
            qp = get_scheme(scheme_name, profile=profile).compute_qparams(w, name=name)
            scale, data = ref(w)
            assert qp.scale is not None
            if scheme_name == "mxfp4":
                mine = (qp.scale.view(torch.int32) >> 23).to(torch.uint8)
                bad += differ(mine, scale.view(torch.uint8))
            else:
                bad += differ(qp.scale, scale.float())
            data = data.view(torch.uint8)
            if profile == "compressed-tensors":  # it stores an exact -0.0 as +0.0, as compressed-tensors does
                codes = torch.where(w == 0, 0, unpack_uint4(data.contiguous())).to(torch.uint8)
                data = pack_uint4(codes)
            bad += differ(quantize(w, qp, pack=True), data)
            n += w.numel()
        rows.append((f"torchao {'to_mx' if scheme_name == 'mxfp4' else 'nvfp4_quantize'}", label, bad, n))
    for scheme_name, preset, block in (("mxfp4", MXFP4A16, 32), ("nvfp4", NVFP4A16, 16)):
        args, bad, n = preset["weights"], 0, 0
        for name, w in weights.items():
            view = w.unflatten(-1, (-1, block))
            g = generate_gparam(w.amin(), w.amax()) if scheme_name == "nvfp4" else None
            scale, zp = calculate_qparams(view.amin(-1), view.amax(-1), args, global_scale=g)
            ref = pack_fp4_to_uint8(ct_quantize(w, scale, zp, args, global_scale=g))
            qp = get_scheme(scheme_name, profile="compressed-tensors").compute_qparams(w, name=name)
            assert qp.scale is not None
            bad += differ(qp.scale, scale.float()) + differ(quantize(w, qp, pack=True), ref)
            n += w.numel()
        rows.append(("compressed-tensors quantize + pack", f"{scheme_name} compressed-tensors", bad, n))
    return rows


def export_rows(weights: dict[str, torch.Tensor]) -> list[Row]:
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    from mono_quant.cli._formats import compressed_tensors_float as ctf
    from mono_quant.cli._tensor import quantize_tensor
    from mono_quant.core import get_dtype

    rows: list[Row] = []
    linear = {k: v for k, v in weights.items() if "embeddings" not in k}
    cases: list[tuple[str, str, Granularity]] = [
        ("fp8", "float8_e4m3fn", PerTensor()),
        ("fp8", "float8_e4m3fn", PerChannel(0)),
        ("fp8", "float8_e4m3fn", PerGroup(-1, 128)),
        ("nvfp4", "nvfp4", PerGroup(-1, 16)),
        ("mxfp4", "mxfp4", PerGroup(-1, 32)),
    ]
    for scheme_name, dtype, g in cases:
        scheme, bad, n = get_scheme(scheme_name, profile="compressed-tensors"), 0, 0
        fmt = ""
        for name, w in linear.items():
            qt, _, _ = quantize_tensor(w, scheme, get_dtype(dtype), g, name=name)
            stored, args = ctf.encode(name, qt)
            fmt = ctf.format_for(qt.quant_dtype) or ""
            module = name.removesuffix(".weight")
            ct_scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs.model_validate(args))
            local = {k.removeprefix(f"{module}."): v for k, v in stored}
            theirs = BaseCompressor.get_value_from_registry(fmt).decompress(local, ct_scheme)["weight"]
            bad += differ(theirs, qt.dequantize(ctf.reader_dtype(args)))
            n += w.numel()
        rows.append((f"compressed-tensors decompressor ({fmt})", f"{scheme_name} {g} export", bad, n))
    return rows


def main() -> None:
    torch.set_num_threads(2)
    path = Path(installed_checkpoint())
    weights = {k: v for k, v in load_file(str(path)).items() if v.dim() == 2 and v.is_floating_point()}
    print("| oracle | scheme, dtype, granularity (profile) | mismatching elements | values compared |")
    print("|---|---|---:|---:|")
    for oracle, case, bad, n in fp8_rows(weights) + fp4_rows(weights) + export_rows(weights):
        print(f"| {oracle} | {case} | {bad} | {n:,} |")


if __name__ == "__main__":
    main()
