"""Write docs/performance.md from benchmarks/results/*.json (the output of `nox -s bench`).

Usage: python benchmarks/performance_page.py
Every number on the page comes from those files, so the page is what the last run measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _row(rows: list[dict[str, Any]], op: str, shape: str, dtype: str, impl: str) -> dict[str, Any]:
    for r in rows:
        if (r["op"], r["shape"], r["dtype"], r["impl"]) == (op, shape, dtype, impl):
            return r
    raise KeyError((op, shape, dtype, impl))


def goals(micro: dict[str, Any], e2e: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = micro["rows"]
    s, big = "4096x4096", "11008x4096"

    def floor(op: str, dtype: str, impl: str, shape: str = s) -> float:
        return float(_row(rows, op, shape, dtype, impl)["vs_floor"])

    def faster(op: str, dtype: str, impl: str) -> float:
        return 1.0 / float(_row(rows, op, s, dtype, impl)["vs_best_anchor"])

    qa, qs = "int8 per-channel qparams+codes (asym)", "int8 per-channel qparams+codes (sym)"
    cold = {(c["impl"], c["dtype"]): c["first_call_ms"] for c in micro["cold"]}
    out: list[tuple[str, str, str]] = []
    for dtype, limit in (("float32", 3.0), ("bfloat16", 5.0)):
        a = floor(qa, dtype, "mono-quant asymmetric")
        b = floor(qa, dtype, "mono-quant asymmetric", big)
        out.append(
            (
                f"int8 per-channel qparams + codes, {dtype}: ≤ {limit:g}× floor",
                f"{a:.1f}× (asym), {floor(qs, dtype, 'mono-quant symmetric'):.1f}× (sym); "
                f"{b:.1f}× on 11008×4096",
                "yes" if a <= limit else ("no (yes on the larger shape)" if b <= limit else "no"),
            )
        )
        f = faster(qa, dtype, "mono-quant asymmetric")
        out.append(
            (
                f"≥ 5× faster than the best anchor, {dtype}",
                f"{f:.1f}× (asym), {faster(qs, dtype, 'mono-quant symmetric'):.1f}× (sym)",
                "yes" if f >= 5 else "no",
            )
        )
        c = cold[("torchao", dtype)] / cold[("mono-quant", dtype)]
        out.append(
            (f"cold first call ≥ 5× faster than torchao's, {dtype}", f"{c:.1f}×", "yes" if c >= 5 else "no")
        )
    for dtype in ("float32", "bfloat16"):
        fresh = floor("int8 dequantize", dtype, "mono-quant dequantize")
        buf = floor("int8 dequantize", dtype, "mono-quant dequantize(out=buffer)")
        out.append(
            (
                f"int8 dequantize ≤ 1.5× a preallocated copy, {dtype} input",
                f"{buf:.1f}× into a reused buffer (`out=`), {fresh:.1f}× into a fresh tensor",
                "yes" if buf <= 1.5 else "no",
            )
        )
    for dtype in ("float32", "bfloat16"):
        q4 = floor("int4 group-128 qparams+codes+pack", dtype, "mono-quant int4-asymmetric")
        out.append(
            (
                f"int4 group-128 qparams + codes + packing ≤ 5× floor, {dtype}",
                f"{q4:.1f}×",
                "yes" if q4 <= 5 else "no",
            )
        )
    d4 = floor("int4 unpack+dequantize", "float32", "mono-quant dequantize(packed, shape=, out=buffer)")
    out.append(
        (
            "int4 unpack + dequantize ≤ 2×",
            f"{d4:.1f}× (`dequantize(packed, qp, shape=..., out=buffer)`)",
            "yes" if d4 <= 2 else "no",
        )
    )
    out.append(("bit-exact with the default profile", "the differential tests run on these kernels", "yes"))
    quiet_rows = [r for r in e2e["rows"] if r.get("condition", "quiet") == "quiet"]
    by = {(r["checkpoint"].split(" ")[0], r["impl"].split(" ")[0]): r for r in quiet_rows}
    mq_syn, ao_syn = by[("synthetic", "mono-quant")], by[("synthetic", "torchao")]
    mq_mini = by[("all-MiniLM-L6-v2", "mono-quant")]
    mem = [mq_mini["rss_over_baseline_in_largest_tensors"], mq_syn["rss_over_baseline_in_largest_tensors"]]
    out.append(
        (
            "CLI peak memory ≤ baseline + 3× largest tensor",
            f"(peak RSS − baseline) / largest tensor: MiniLM {mem[0]:.1f}×, synthetic 2 GB {mem[1]:.1f}×",
            "yes" if max(mem) <= 3 else "no",
        )
    )
    sp = ao_syn["wall_s"] / mq_syn["wall_s"]
    out.append(
        (
            "end to end ≥ 3× faster than the torchao script (2 GB)",
            f"{sp:.1f}× ({mq_syn['wall_s']:.1f} s vs {ao_syn['wall_s']:.1f} s)",
            "yes" if sp >= 3 else "no",
        )
    )
    out += speed_goals(micro, e2e)
    return out


def speed_goals(micro: dict[str, Any], e2e: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Issue 15's goals: a busy machine, the two-step API, the disk floor, --jobs."""
    out: list[tuple[str, str, str]] = []
    rows, s = micro["rows"], "4096x4096"
    qa = "int8 per-channel qparams+codes (asym)"
    two = []
    for dtype in ("float32", "bfloat16"):
        fused = _row(rows, qa, s, dtype, "mono-quant asymmetric")["median_ms"]
        steps = _row(rows, qa, s, dtype, "mono-quant asymmetric, two steps: quantize(x, compute_qparams(x))")
        two.append((dtype, steps["median_ms"] / fused))
    out.append(
        (
            "`quantize(x, compute_qparams(x))` ≤ 1.2× `quantize_tensor`",
            ", ".join(f"{r:.2f}× {d}" for d, r in two),
            "yes" if max(r for _, r in two) <= 1.2 else "no",
        )
    )
    synth = [r for r in e2e["rows"] if r["checkpoint"].startswith("synthetic")]
    mq = {r["condition"]: r for r in synth if r["impl"].startswith("mono-quant")}
    if "every core busy" in mq:
        busy = mq["every core busy"]
        out.append(
            (
                f"CLI {busy['checkpoint'].split(' ', 1)[1]} with every core busy ≤ 2.2× its quiet time",
                f"{busy['vs_quiet']:.2f}× ({busy['wall_s']:.1f} s vs {mq['quiet']['wall_s']:.1f} s)",
                "yes" if busy["vs_quiet"] <= 2.2 else "no",
            )
        )
    quiet = mq["quiet"]
    floor_s = quiet["wall_s"] / quiet["vs_floor"]
    out.append(
        (
            "CLI end to end, quiet, ≤ 1.15× the floor script",
            f"{quiet['vs_floor']:.2f}× ({quiet['wall_s']:.2f} s vs {floor_s:.2f} s)",
            "yes" if quiet["vs_floor"] <= 1.15 else "no",
        )
    )
    jobs = {r["impl"]: r for r in e2e.get("jobs", [])}
    two_jobs = jobs.get("mono-quant quantize --jobs 2")
    if two_jobs is not None:
        sp = two_jobs["speedup_vs_jobs_1"]
        out.append(
            (
                "`--jobs 2` ≥ 1.6× faster than `--jobs 1` (4 shards)",
                f"{sp:.2f}×",
                "yes" if sp >= 1.6 else "no",
            )
        )
    return out


def _contention_table(micro: dict[str, Any]) -> str:
    lines = [
        "| int8 per-channel 4096×4096 fp32 | quiet ms | every core busy ms | busy worst ms | busy / quiet |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['impl']} | {c['quiet_ms']:.1f} | {c['busy_ms']:.1f} | {c['busy_worst_ms']:.1f} "
        f"| {c['busy_over_quiet']:.2f} |"
        for c in micro.get("contention", [])
    ]
    return "\n".join(lines)


def main() -> int:
    micro = json.loads((RESULTS / "micro.json").read_text())
    e2e = json.loads((RESULTS / "end_to_end.json").read_text())
    template = (ROOT / "benchmarks" / "performance.md.in").read_text()
    table = "| goal | measured | met? |\n|---|---|---|\n" + "\n".join(
        f"| {g} | {m} | {ok} |" for g, m, ok in goals(micro, e2e)
    )
    env = micro["env"]
    page = template.format(
        goals=table,
        micro=(RESULTS / "micro.md").read_text(),
        contention=_contention_table(micro),
        end_to_end=(RESULTS / "end_to_end.md").read_text(),
        threads=env["threads"],
        torch=env["torch"],
        repeats=env["repeats"],
    )
    (ROOT / "docs" / "performance.md").write_text(page)
    print("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
