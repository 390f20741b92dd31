from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mono_quant.cli import (
    QuantizedTensor,
    dequantize_checkpoint,
    dequantize_state_dict,
    load_quantized,
    quantize_checkpoint,
    quantize_model,
    quantize_state_dict,
)
from mono_quant.cli._checkpoint import same_bits
from mono_quant.core import PerGroup

SCHEMES = [
    {"scheme": "asymmetric"},
    {"scheme": "symmetric", "dtype": "int8", "granularity": "per-tensor"},
    {"scheme": "int4-symmetric", "group_size": 64},
    {"scheme": "int4-asymmetric", "dtype": "uint4", "granularity": "per-channel"},
]


def _opts(opts):
    # the conv (8, 4, 3, 3) has no 64-wide axis: leave it out of the group-wise runs
    return {**opts, "exclude": ["*conv*"]} if "group_size" in opts else opts


@pytest.mark.parametrize("opts", SCHEMES)
def test_quantize_checkpoint_then_load_equals_quantize_state_dict(tmp_path, ckpt, state_dict, opts):
    report = quantize_checkpoint(ckpt, tmp_path / "q.safetensors", **_opts(opts))
    loaded = load_quantized(tmp_path / "q.safetensors")
    in_memory = quantize_state_dict(state_dict, **_opts(opts))
    assert loaded.equals(in_memory)
    assert loaded.quantized_names == [t.name for t in report.tensors if t.action == "quantized"]


@pytest.mark.parametrize("opts", SCHEMES)
def test_dequantize_checkpoint_is_bit_identical_to_dequantize_state_dict(tmp_path, ckpt, opts):
    quantize_checkpoint(ckpt, tmp_path / "q.safetensors", **_opts(opts))
    dequantize_checkpoint(tmp_path / "q.safetensors", tmp_path / "d.safetensors")
    on_disk = load_file(tmp_path / "d.safetensors")
    in_memory = dequantize_state_dict(load_quantized(tmp_path / "q.safetensors"))
    assert set(on_disk) == set(in_memory)
    for name, t in in_memory.items():
        assert same_bits(on_disk[name], t), name


def test_dequantized_tensors_come_back_in_their_original_dtype_unless_asked(ckpt, state_dict):
    qc = quantize_state_dict(state_dict)
    assert dequantize_state_dict(qc)["layers.1.fc.weight"].dtype == torch.bfloat16
    assert dequantize_state_dict(qc, dtype=torch.float32)["layers.1.fc.weight"].dtype == torch.float32


def test_unselected_tensors_are_copied_bit_for_bit(tmp_path, ckpt, state_dict):
    quantize_checkpoint(ckpt, tmp_path / "q.safetensors")
    out = load_file(tmp_path / "q.safetensors")
    for name in ("layers.0.fc.bias", "layers.0.norm.weight", "position_ids"):
        assert same_bits(out[name], state_dict[name])


def test_report_bytes_are_the_bytes_in_the_file(tmp_path, ckpt):
    report = quantize_checkpoint(
        ckpt, tmp_path / "q.safetensors", scheme="int4-symmetric", exclude=["*conv*"]
    )
    path = tmp_path / "q.safetensors"
    with safe_open(str(path), "pt") as f:
        stored = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.offset_keys())
    assert report.bytes_after == stored
    assert report.output_file_bytes == path.stat().st_size
    assert report.input_file_bytes == ckpt.stat().st_size
    assert report.bytes_before == sum(t.numel() * t.element_size() for t in load_file(ckpt).values())


def test_report_sqnr_matches_an_independent_computation(tmp_path, ckpt, state_dict):
    report = quantize_checkpoint(ckpt, tmp_path / "q.safetensors", scheme="symmetric")
    deq = dequantize_state_dict(load_quantized(tmp_path / "q.safetensors"), dtype=torch.float32)
    total_s = total_n = 0.0
    for t in report.tensors:
        if t.action != "quantized":
            continue
        x = state_dict[t.name].double()
        s, n = float((x * x).sum()), float(((x - deq[t.name].double()) ** 2).sum())
        total_s, total_n = total_s + s, total_n + n
        assert t.sqnr_db == pytest.approx(10 * math.log10(s / n), abs=1e-3), t.name
    assert report.sqnr_db == pytest.approx(10 * math.log10(total_s / total_n), abs=1e-3)


def test_sharded_in_gives_sharded_out_with_index_and_other_files(tmp_path, sharded, state_dict, unchanged):
    check = unchanged(sharded)
    out = tmp_path / "q"
    quantize_checkpoint(sharded, out, scheme="symmetric", include=["*"])  # every 2+-D tensor, not only Linear
    check()
    assert sorted(p.name for p in out.iterdir()) == [
        ".mono-quant-output.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "mono-quant.config.json",  # a native folder is not a loadable transformers model
        "tokenizer.json",
    ]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["embed.weight::codes"] == "model-00001-of-00002.safetensors"
    assert index["weight_map"]["layers.1.fc.weight::scale"] == "model-00002-of-00002.safetensors"
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for f in out.glob("*.safetensors") for t in load_file(f).values()
    )
    assert load_quantized(out).equals(quantize_state_dict(state_dict, scheme="symmetric"))
    dequantize_checkpoint(out, tmp_path / "d")
    assert (tmp_path / "d" / "model.safetensors.index.json").exists()
    assert (tmp_path / "d" / "config.json").read_bytes() == (sharded / "config.json").read_bytes()
    assert set(
        json.loads((tmp_path / "d" / "model.safetensors.index.json").read_text())["weight_map"]
    ) == set(load_quantized(out))


def test_a_pt_state_dict_is_quantized_to_safetensors(tmp_path, state_dict):
    torch.save(state_dict, tmp_path / "model.pt")
    quantize_checkpoint(tmp_path / "model.pt", tmp_path / "q.safetensors")
    assert load_quantized(tmp_path / "q.safetensors").equals(quantize_state_dict(state_dict))


def test_quantize_state_dict_leaves_its_input_alone(state_dict):
    before = {k: v.clone() for k, v in state_dict.items()}
    qc = quantize_state_dict(state_dict, scheme="int4-asymmetric", exclude=["*conv*"])
    assert all(same_bits(state_dict[k], before[k]) for k in before)
    assert isinstance(qc["embed.weight"], QuantizedTensor)
    assert qc["position_ids"] is state_dict["position_ids"]


class Doubled(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_quantize_model_selects_by_module_type_and_never_modifies_the_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(16, 8), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), Doubled(8, 4)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qc = quantize_model(model, scheme="symmetric")
    assert qc.quantized_names == ["1.weight"]
    assert qc.report is not None
    assert any("'3'" in n and "Doubled subclasses Linear" in n for n in qc.report.notes)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with_emb = quantize_model(model, scheme="symmetric", embeddings=True, types=(torch.nn.Linear, Doubled))
    assert with_emb.quantized_names == ["0.weight", "1.weight", "3.weight"]


def test_quantize_model_passes_the_granularity_through():
    model = torch.nn.Linear(64, 4)
    qc = quantize_model(model, scheme="int4-symmetric", group_size=32)
    qt = qc["weight"]
    assert isinstance(qt, QuantizedTensor) and qt.qparams.granularity == PerGroup(1, 32)
