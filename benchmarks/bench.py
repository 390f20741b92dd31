"""Side-by-side micro benchmarks: mono-quant vs torch.ao, torchao, compressed-tensors and the floors.

Usage: python benchmarks/bench.py [--threads N] [--repeats N] [--quick] [--json PATH] [--markdown PATH]

Every row of one (operation, shape, dtype) group runs on the same tensor in the
same process; runs are interleaved round by round (so drift hits every row
alike) and each row reports the median. Ratios are to the floor row and to the
fastest anchor (the best non-mono-quant implementation) of the same group.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*quantize.*deprecated.*")
warnings.filterwarnings("ignore", category=UserWarning)

F32_EPS = torch.finfo(torch.float32).eps


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    impl: str
    kind: str  # "mono", "anchor" or "floor"
    median_ms: float
    gbps: float
    vs_floor: float | None = None
    vs_best_anchor: float | None = None
    note: str = ""


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_group(
    op: str,
    x: torch.Tensor,
    impls: dict[str, tuple[str, Callable[[], object]]],
    repeats: int,
    warmup: int = 2,
) -> list[Row]:
    """Time every implementation of one group, interleaved, and derive the ratios."""
    ok: dict[str, tuple[str, Callable[[], object]]] = {}
    notes: dict[str, str] = {}
    for name, (kind, fn) in impls.items():
        try:
            for _ in range(warmup):
                fn()
            ok[name] = (kind, fn)
        except Exception as exc:  # noqa: BLE001 - an anchor that cannot run this case is reported, not fatal
            notes[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    times: dict[str, list[float]] = {name: [] for name in ok}
    for _ in range(repeats):
        for name, (_, fn) in ok.items():
            times[name].append(_time(fn))
    nbytes = x.numel() * x.element_size()
    shape, dtype = "x".join(map(str, x.shape)), str(x.dtype).replace("torch.", "")
    rows = []
    for name, (kind, _) in ok.items():
        med = statistics.median(times[name])
        rows.append(Row(op, shape, dtype, name, kind, med * 1e3, nbytes / med / 1e9))
    floors = [r.median_ms for r in rows if r.kind == "floor"]
    anchors = [r.median_ms for r in rows if r.kind == "anchor"]
    for r in rows:
        r.vs_floor = r.median_ms / min(floors) if floors else None
        r.vs_best_anchor = r.median_ms / min(anchors) if anchors else None
    for name, note in notes.items():
        nan = float("nan")
        rows.append(Row(op, shape, dtype, name, impls[name][0], nan, nan, note=f"skipped: {note}"))
    return rows


def _in_blocks(scheme: Any, x: torch.Tensor) -> object:
    from mono_quant.core import PerChannel, block_threads

    with block_threads(THREADS):
        return scheme.quantize_tensor(x, "int8", PerChannel(0))


THREADS = 2  # set by main from --threads


def build_groups(x: torch.Tensor) -> list[tuple[str, dict[str, tuple[str, Callable[[], object]]]]]:
    """The operations of the issue, each with mono-quant, its anchors and its floor."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )

    from mono_quant.core import PerChannel, PerGroup, dequantize, get_scheme, quantize

    _, cols = x.shape
    asym, sym = get_scheme("asymmetric"), get_scheme("symmetric")
    i4 = get_scheme("int4-asymmetric")
    out_f32 = torch.empty(x.shape, dtype=torch.float32)
    x_f32 = x.float()
    floor_int8: tuple[str, Callable[[], object]] = ("floor", lambda: x.to(torch.int8))

    def tao_qparams(
        mapping: Any, block: tuple[int, int], qmin: int, qmax: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return choose_qparams_affine(x, mapping, block, torch.int8, qmin, qmax, eps=F32_EPS)

    def tao_codes(mapping: Any) -> torch.Tensor:
        s, z = tao_qparams(mapping, (1, cols), -128, 127)
        return quantize_affine(x, (1, cols), s, z, torch.int8, -128, 127)

    def torch_ao(qscheme: torch.qscheme) -> torch.Tensor:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=qscheme)
        obs(x_f32 if x.dtype != torch.float32 else x)
        s, z = obs.calculate_qparams()
        return torch.quantize_per_channel(x_f32, s, z, 0, torch.qint8).int_repr()

    def torch_ao_qparams() -> object:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_affine)
        obs(x)
        return obs.calculate_qparams()

    groups: list[tuple[str, dict[str, tuple[str, Callable[[], object]]]]] = []
    groups.append(
        (
            "int8 per-channel qparams",
            {
                "mono-quant asymmetric": ("mono", lambda: asym.compute_qparams(x, "int8", PerChannel(0))),
                "torchao choose_qparams_affine": (
                    "anchor",
                    lambda: tao_qparams(MappingType.ASYMMETRIC, (1, cols), -128, 127),
                ),
                "torch.ao PerChannelMinMaxObserver": ("anchor", torch_ao_qparams),
                "floor: torch.aminmax(dim=1)": ("floor", lambda: torch.aminmax(x, dim=1)),
            },
        )
    )
    for label, scheme, mapping, qscheme in (
        ("asym", asym, MappingType.ASYMMETRIC, torch.per_channel_affine),
        ("sym", sym, MappingType.SYMMETRIC, torch.per_channel_symmetric),
    ):
        impls: dict[str, tuple[str, Callable[[], object]]] = {
            f"mono-quant {scheme.name}": (
                "mono",
                lambda scheme=scheme: scheme.quantize_tensor(x, "int8", PerChannel(0)),
            ),
            # The README's path: qparams, then core's quantize (issue 15's two-step row).
            f"mono-quant {scheme.name}, two steps: quantize(x, compute_qparams(x))": (
                "mono",
                lambda scheme=scheme: quantize(x, scheme.compute_qparams(x, "int8", PerChannel(0))),
            ),
            f"mono-quant {scheme.name} in block_threads()": (
                "mono",
                lambda scheme=scheme: _in_blocks(scheme, x),
            ),
            "torchao choose+quantize_affine": ("anchor", lambda mapping=mapping: tao_codes(mapping)),
            "torch.ao observer+quantize_per_channel": ("anchor", lambda q=qscheme: torch_ao(q)),
            "floor: x.to(int8)": floor_int8,
        }
        ct = _compressed_tensors_int8(x, symmetric=label == "sym")
        if ct is not None:
            impls["compressed-tensors quantize"] = ("anchor", ct)
        groups.append((f"int8 per-channel qparams+codes ({label})", impls))

    codes, qp = asym.quantize_tensor(x, "int8", PerChannel(0))
    s, z = tao_qparams(MappingType.ASYMMETRIC, (1, cols), -128, 127)
    tao_q = quantize_affine(x, (1, cols), s, z, torch.int8, -128, 127)
    groups.append(
        (
            "int8 dequantize",
            {
                "mono-quant dequantize": ("mono", lambda: dequantize(codes, qp)),
                "mono-quant dequantize(out=buffer)": ("mono", lambda: dequantize(codes, qp, out=out_f32)),
                "torchao dequantize_affine": (
                    "anchor",
                    lambda: dequantize_affine(tao_q, (1, cols), s, z, torch.int8, -128, 127),
                ),
                "floor: preallocated out.copy_(f32)": ("floor", lambda: out_f32.copy_(x_f32)),
            },
        )
    )

    packed, qp4 = i4.quantize_tensor(x, "int4", PerGroup(-1, 128), pack=True)
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32

    def tao_int4() -> torch.Tensor:
        s4, z4 = tao_qparams(MappingType.ASYMMETRIC, (1, 128), -8, 7)
        q4 = quantize_affine(x, (1, 128), s4, z4, torch.int8, -8, 7)
        return pack_to_int32(q4, 4)

    s4, z4 = tao_qparams(MappingType.ASYMMETRIC, (1, 128), -8, 7)
    ct_packed = pack_to_int32(quantize_affine(x, (1, 128), s4, z4, torch.int8, -8, 7), 4)
    groups.append(
        (
            "int4 group-128 qparams+codes+pack",
            {
                "mono-quant int4-asymmetric": (
                    "mono",
                    lambda: i4.quantize_tensor(x, "int4", PerGroup(-1, 128), pack=True),
                ),
                "torchao choose+quantize_affine + ct pack_to_int32": ("anchor", tao_int4),
                "floor: x.to(int8)": floor_int8,
            },
        )
    )
    groups.append(
        (
            "int4 unpack+dequantize",
            {
                "mono-quant dequantize(packed, shape=)": (
                    "mono",
                    lambda: dequantize(packed, qp4, shape=x.shape),
                ),
                "mono-quant dequantize(packed, shape=, out=buffer)": (
                    "mono",
                    lambda: dequantize(packed, qp4, shape=x.shape, out=out_f32),
                ),
                "ct unpack_from_int32 + torchao dequantize_affine": (
                    "anchor",
                    lambda: dequantize_affine(
                        unpack_from_int32(ct_packed, 4, torch.Size(x.shape)),
                        (1, 128),
                        s4,
                        z4,
                        torch.int8,
                        -8,
                        7,
                    ),
                ),
                "floor: preallocated out.copy_(f32)": ("floor", lambda: out_f32.copy_(x_f32)),
            },
        )
    )
    groups.extend(fp8_groups(x))
    return groups


def fp8_groups(x: torch.Tensor) -> list[tuple[str, dict[str, tuple[str, Callable[[], object]]]]]:
    """FP8 E4M3 per output channel (mono-quant-fp8), beside torchao's float8 primitives and the cast floor."""
    from torchao.quantization.quant_primitives import (
        _choose_scale_float8,
        _dequantize_affine_float8,
        _quantize_affine_float8,
    )

    from mono_quant.core import MonoQuantError, PerChannel, dequantize, get_scheme

    try:
        fp8 = get_scheme("fp8")
    except MonoQuantError:  # mono-quant-fp8 is not installed: no FP8 rows
        return []
    e4m3, cols = torch.float8_e4m3fn, x.shape[1]
    floor_at = F32_EPS * torch.finfo(e4m3).max  # torchao's hp_value_lb: our eps floor on the scale

    def tao() -> torch.Tensor:
        scale = _choose_scale_float8(x, [1, cols], e4m3, hp_value_lb=floor_at)
        return _quantize_affine_float8(x, scale, e4m3)

    impls: dict[str, tuple[str, Callable[[], object]]] = {
        "mono-quant fp8": ("mono", lambda: fp8.quantize_tensor(x, "float8_e4m3fn", PerChannel(0))),
        "torchao _choose_scale_float8+_quantize_affine_float8": ("anchor", tao),
        "floor: x.to(float8_e4m3fn)": ("floor", lambda: x.to(e4m3)),
    }
    ct = _compressed_tensors_fp8(x)
    if ct is not None:
        impls["compressed-tensors quantize"] = ("anchor", ct)
    codes, qp = fp8.quantize_tensor(x, "float8_e4m3fn", PerChannel(0))
    assert qp.scale is not None
    scale = qp.scale.reshape(-1, 1)
    tao_dequantize = _dequantize_affine_float8
    return [
        ("fp8 e4m3 per-channel qparams+codes", impls),
        (
            "fp8 e4m3 dequantize",
            {
                "mono-quant dequantize": ("mono", lambda: dequantize(codes, qp)),
                "torchao _dequantize_affine_float8": ("anchor", lambda: tao_dequantize(codes, scale)),
                # torch's float8 -> float32 conversion is the cost here, not the multiply
                "floor: codes.to(float32)": ("floor", lambda: codes.to(torch.float32)),
            },
        ),
    ]


def _compressed_tensors_fp8(x: torch.Tensor) -> Callable[[], object] | None:
    try:
        from compressed_tensors.quantization import QuantizationArgs
        from compressed_tensors.quantization.lifecycle.forward import quantize
        from compressed_tensors.quantization.utils import calculate_qparams
    except ImportError:
        return None
    args = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel")

    def run() -> torch.Tensor:
        lo, hi = torch.aminmax(x, dim=1, keepdim=True)
        scale, zp = calculate_qparams(lo, hi, args)
        return quantize(x, scale, zp, args, dtype=torch.float8_e4m3fn)

    return run


def _compressed_tensors_int8(x: torch.Tensor, symmetric: bool) -> Callable[[], object] | None:
    try:
        from compressed_tensors.quantization import QuantizationArgs
        from compressed_tensors.quantization.lifecycle.forward import quantize
        from compressed_tensors.quantization.utils import calculate_qparams
    except ImportError:
        return None
    args = QuantizationArgs(num_bits=8, type="int", symmetric=symmetric, strategy="channel")

    def run() -> torch.Tensor:
        lo, hi = torch.aminmax(x, dim=1, keepdim=True)
        scale, zp = calculate_qparams(lo, hi, args)
        return quantize(x, scale, zp, args, dtype=torch.int8)

    return run


COLD_SNIPPET = r"""
import time, warnings, torch, sys
warnings.filterwarnings("ignore")
torch.set_num_threads({threads})
x = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0)).to(torch.{dtype})
impl = "{impl}"
if impl == "mono-quant":
    from mono_quant.core import PerChannel, get_scheme
    s = get_scheme("asymmetric")
    f = lambda: s.quantize_tensor(x, "int8", PerChannel(0))
else:
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine
    def f():
        eps = torch.finfo(torch.float32).eps
        sc, z = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 4096), torch.int8, -128, 127, eps=eps)
        return quantize_affine(x, (1, 4096), sc, z, torch.int8, -128, 127)
t0 = time.perf_counter(); f(); t1 = time.perf_counter(); f(); t2 = time.perf_counter()
print((t1 - t0) * 1e3, (t2 - t1) * 1e3)
"""


def cold_rows(threads: int) -> list[dict[str, Any]]:
    """First call in a fresh process (imports done, nothing warmed) vs the second call."""
    out = []
    for dtype in ("float32", "bfloat16"):
        for impl in ("mono-quant", "torchao"):
            code = COLD_SNIPPET.format(threads=threads, dtype=dtype, impl=impl)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            first, second = map(float, res.stdout.split())
            out.append(
                {
                    "impl": impl,
                    "dtype": dtype,
                    "op": "int8 per-channel qparams+codes (asym) 4096x4096",
                    "first_call_ms": first,
                    "second_call_ms": second,
                }
            )
    return out


BUSY_LOOP = "while True: pass"


def contention_rows(threads: int, repeats: int) -> list[dict[str, Any]]:
    """int8 per-channel 4096x4096 fp32, quiet and beside one busy-loop process per core.

    The same three implementations run interleaved in each condition: quantize_tensor
    on torch's intra-op threads (the library default), the same inside
    ``block_threads(threads)`` (what the CLI runs), and the ``x.to(int8)`` floor.
    A fair share of a machine whose every core is also running a busy loop is 2x.
    """
    from mono_quant.core import PerChannel, block_threads, get_scheme

    asym = get_scheme("asymmetric")
    x = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0))

    def in_blocks() -> object:
        with block_threads(threads):
            return asym.quantize_tensor(x, "int8", PerChannel(0))

    impls: dict[str, Callable[[], object]] = {
        "quantize_tensor, torch intra-op threads": lambda: asym.quantize_tensor(x, "int8", PerChannel(0)),
        f"quantize_tensor in block_threads({threads})": in_blocks,
        "floor: x.to(int8)": lambda: x.to(torch.int8),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"quiet": [], "busy": []} for name in impls}
    for condition in ("quiet", "busy"):
        hogs = []
        if condition == "busy":
            hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(os.cpu_count() or 1)]
            time.sleep(0.5)
        try:
            for fn in impls.values():
                fn()
            for _ in range(repeats):
                for name, fn in impls.items():
                    results[name][condition].append(_time(fn))
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    out = []
    for name, r in results.items():
        quiet, busy = statistics.median(r["quiet"]), statistics.median(r["busy"])
        out.append(
            {
                "impl": name,
                "quiet_ms": quiet * 1e3,
                "busy_ms": busy * 1e3,
                "busy_worst_ms": max(r["busy"]) * 1e3,
                "busy_over_quiet": busy / quiet,
            }
        )
    return out


def format_table(rows: list[Row]) -> str:
    lines = [
        "| operation | shape | dtype | implementation | median ms | GB/s in | × floor | × best anchor |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.note:
            lines.append(f"| {r.op} | {r.shape} | {r.dtype} | {r.impl} | – | – | – | {r.note} |")
            continue
        vf = f"{r.vs_floor:.2f}" if r.vs_floor is not None else "–"
        va = f"{r.vs_best_anchor:.3f}" if r.vs_best_anchor is not None else "–"
        name = f"**{r.impl}**" if r.kind == "mono" else r.impl
        lines.append(
            f"| {r.op} | {r.shape} | {r.dtype} | {name} | {r.median_ms:.2f} | {r.gbps:.1f} | {vf} | {va} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="4096x4096 only, fewer repeats")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/micro.json"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/results/micro.md"))
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (11008, 4096)]
    repeats = 5 if args.quick else args.repeats
    rows: list[Row] = []
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
            for op, impls in build_groups(x):
                group = run_group(op, x, impls, repeats)
                rows.extend(group)
                print(format_table(group).split("\n", 2)[-1], flush=True)
            del x
    cold = cold_rows(args.threads)
    contention = contention_rows(args.threads, repeats)
    env = {
        "torch": torch.__version__,
        "threads": args.threads,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
    }
    table = format_table(rows)
    cold_lines = ["| first call in a fresh process | dtype | first ms | second ms |", "|---|---|---:|---:|"]
    cold_lines += [
        f"| {c['impl']} | {c['dtype']} | {c['first_call_ms']:.1f} | {c['second_call_ms']:.1f} |" for c in cold
    ]
    busy_lines = [
        "| int8 per-channel 4096x4096 fp32, every core also running a busy loop | quiet ms | busy ms "
        "| busy worst ms | busy / quiet |",
        "|---|---:|---:|---:|---:|",
    ]
    busy_lines += [
        f"| {c['impl']} | {c['quiet_ms']:.1f} | {c['busy_ms']:.1f} | {c['busy_worst_ms']:.1f} "
        f"| {c['busy_over_quiet']:.2f} |"
        for c in contention
    ]
    cold_lines += ["", *busy_lines]
    print("\n" + table + "\n\n" + "\n".join(cold_lines))
    print(f"\nthreads={args.threads} torch={torch.__version__} repeats={repeats}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"env": env, "rows": [asdict(r) for r in rows], "cold": cold, "contention": contention}, indent=1
        )
    )
    args.markdown.write_text(
        f"{table}\n\n" + "\n".join(cold_lines) + f"\n\nthreads={args.threads}, torch {torch.__version__}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
