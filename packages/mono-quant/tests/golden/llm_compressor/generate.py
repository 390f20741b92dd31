"""Regenerate the llm-compressor golden files that mono-quant's compressed-tensors profile is checked against.

llm-compressor pins other versions of compressed-tensors and transformers than
mono-quant's test environments, so it runs here, once, in its own virtual
environment, and its output is committed:

    python3.11 -m venv /tmp/llmc
    /tmp/llmc/bin/pip install -c constraints.txt llmcompressor==0.14.0.1   # torch stays 2.13.0 (CPU)
    HF_HUB_OFFLINE=1 /tmp/llmc/bin/python packages/mono-quant/tests/golden/llm_compressor/generate.py

It builds a small Llama-architecture model (random bfloat16 weights, fixed
seed), saves it as ``base/``, and quantizes it with llm-compressor's
``QuantizationModifier`` (data-free, weights only, ``targets="Linear"``,
``ignore=["lm_head"]``) into one folder per scheme (W8A8 with dynamic activations needs
no calibration data either). Only what the tests read is
kept: ``config.json`` and ``model.safetensors`` of each folder.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: folder -> llm-compressor scheme (a preset name, or weight args of one config group).
SCHEMES: dict[str, str | dict[str, object]] = {
    "w4a16-sym-g128": "W4A16",
    "w4a16-asym-g128": "W4A16_ASYM",
    "w8a16-sym-g128": "W8A16",
    "w8a16-sym-channel": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
    "w8a16-asym-channel": {"num_bits": 8, "type": "int", "symmetric": False, "strategy": "channel"},
    "w8a8-dynamic": "W8A8",  # int8 channel weights, dynamic per-token int8 activations: no calibration
    "fp8-dynamic": "FP8_DYNAMIC",  # FP8 E4M3 channel weights, dynamic per-token FP8 activations
}


def main() -> int:
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    work = Path(tempfile.mkdtemp())
    model.save_pretrained(work / "base")
    _keep(work / "base", HERE / "base")
    for folder, scheme in SCHEMES.items():
        if isinstance(scheme, str):
            recipe = QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"])
        else:
            groups = {"group_0": {"targets": ["Linear"], "weights": scheme}}
            recipe = QuantizationModifier(config_groups=groups, ignore=["lm_head"])
        oneshot(model=str(work / "base"), recipe=recipe, output_dir=str(work / folder))
        _keep(work / folder, HERE / folder)
    import compressed_tensors
    import llmcompressor
    import transformers

    versions = {
        "llmcompressor": llmcompressor.__version__,
        "compressed-tensors": compressed_tensors.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    (HERE / "versions.json").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work)
    return 0


def _keep(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(src / name, dest / name)


if __name__ == "__main__":
    sys.exit(main())
