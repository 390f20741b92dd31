"""The compressed-tensors output equals llm-compressor's, tensor for tensor and bit for bit (golden files).

``tests/golden/llm_compressor/generate.py`` (run with llm-compressor 0.14 in its
own environment; see its docstring) quantized a small random bfloat16
Llama-architecture model, kept as ``base/``, once per scheme. The same command
here must give the same checkpoint: every tensor (codes, scales in bfloat16,
zero-points, shapes, the unquantized embedding, norms and ``lm_head``) and the
``quantization_config`` block.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mono_quant.cli import quantize_checkpoint

GOLDEN = Path(__file__).parent / "golden" / "llm_compressor"

#: golden folder -> the mono-quant options that ask for the same scheme.
CASES = {
    "w4a16-sym-g128": {"scheme": "int4-symmetric"},
    "w4a16-asym-g128": {"scheme": "int4-asymmetric"},
    "w8a16-sym-g128": {"scheme": "symmetric", "dtype": "int8", "granularity": "per-group"},
    "w8a16-sym-channel": {"scheme": "symmetric", "dtype": "int8", "granularity": "per-channel"},
    "w8a16-asym-channel": {"scheme": "asymmetric", "dtype": "int8", "granularity": "per-channel"},
    "w8a8-dynamic": {
        "scheme": "symmetric",
        "dtype": "int8",
        "granularity": "per-channel",
        "activations": "dynamic",
    },
    "fp8-dynamic": {"scheme": "fp8", "granularity": "per-channel", "activations": "dynamic"},
}


@pytest.mark.parametrize("folder", sorted(CASES))
def test_the_documented_command_reproduces_llm_compressor_bit_for_bit(tmp_path, folder):
    out = tmp_path / "out"
    quantize_checkpoint(GOLDEN / "base", out, format="compressed-tensors", **CASES[folder])  # type: ignore[arg-type]
    ours, theirs = load_file(out / "model.safetensors"), load_file(GOLDEN / folder / "model.safetensors")
    assert sorted(ours) == sorted(theirs)
    scales = [k for k in theirs if k.endswith("_scale")]
    codes = [k.removesuffix("_scale") + ("_packed" if "a16" in folder else "") for k in scales]
    assert len(scales) == 14 and all(c in theirs for c in codes)  # 7 Linear in each of 2 layers; not lm_head
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype, name
        assert torch.equal(ours[name], theirs[name]), name
    assert all(theirs[k].dtype == torch.bfloat16 for k in scales)  # the model's dtype
    config = json.loads((out / "config.json").read_text())
    golden = json.loads((GOLDEN / folder / "config.json").read_text())
    assert config["quantization_config"] == golden["quantization_config"]
    # The rest of config.json is the model's own (llm-compressor's transformers adds its version).
    drop = {"quantization_config", "transformers_version"}
    base = json.loads((GOLDEN / "base" / "config.json").read_text())
    assert {k: v for k, v in config.items() if k not in drop} == {
        k: v for k, v in base.items() if k not in drop
    }


def test_the_golden_files_say_which_versions_made_them():
    versions = json.loads((GOLDEN / "versions.json").read_text())
    assert versions["llmcompressor"] == "0.14.0.1" and versions["torch"].startswith("2.13.0")
