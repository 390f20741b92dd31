"""What an ONNX export wrote, read back from the file; and the same quantized model in PyTorch."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mono_quant.cli._errors import RefusedError
from mono_quant.cli._onnx_graph import read_dq
from mono_quant.cli._report import human_bytes
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import QParams, dequantize, quantize

if TYPE_CHECKING:
    import onnx

__all__ = ["OnnxExport", "OnnxWeight", "check_written"]


@dataclass(frozen=True)
class OnnxWeight:
    """One Linear weight as written: the module, its codes initializer and how it is laid out.

    ``initializer`` holds the codes; ``dequantized`` is the output of their
    ``DequantizeLinear`` (the name the float weight had in the exported graph).
    ``transposed``: stored ``(in, out)`` (a ``MatMul``'s ``B``), the transpose of
    PyTorch's ``(out, in)``; ``axis`` is ``DequantizeLinear``'s (``None``: per
    tensor). ``tensor`` holds mono-quant's codes and QParams, in PyTorch's layout;
    ``sqnr_db`` is the weight's signal-to-quantization-noise ratio.
    """

    module: str
    initializer: str
    dequantized: str
    transposed: bool
    axis: int | None
    tensor: QuantizedTensor
    sqnr_db: float | None = None
    offset: int = 0  # 128: int8 codes stored as uint8 code + 128, zero-point + 128 (the same floats)


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote, read back from the file before it was published.

    ``activations``: module -> the QParams of its quantized input; ``left``:
    Linear modules whose weight stayed float, with the reason; ``runtime``: what
    checked the file (``None`` when onnxruntime did not); seconds: ``export_s``
    for ``torch.onnx``, ``total_s`` for the whole call, ``calibration_s`` for the
    calibration passed in (when it says).
    """

    path: str
    opset: int
    weights: list[OnnxWeight] = field(default_factory=list)
    activations: dict[str, QParams] = field(default_factory=dict)
    left: dict[str, str] = field(default_factory=dict)
    runtime: str | None = None
    file_bytes: int = 0
    export_s: float = 0.0
    total_s: float = 0.0
    calibration_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "opset": self.opset,
            "weights": [
                {
                    "module": w.module,
                    "initializer": w.initializer,
                    "dequantized": w.dequantized,
                    "transposed": w.transposed,
                    "axis": w.axis,
                    "dtype": w.tensor.qparams.dtype,
                    "scheme": w.tensor.qparams.scheme,
                    "granularity": w.tensor.qparams.granularity.to_dict(),
                    "sqnr_db": w.sqnr_db,
                    "stored_as": "uint8 (code + 128)" if w.offset else w.tensor.qparams.dtype,
                }
                for w in self.weights
            ],
            "activations": {m: qp.metadata() for m, qp in self.activations.items()},
            "left": dict(self.left),
            "runtime": self.runtime,
            "file_bytes": self.file_bytes,
            "export_s": round(self.export_s, 3),
            "total_s": round(self.total_s, 3),
            "calibration_s": None if self.calibration_s is None else round(self.calibration_s, 3),
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """The terminal view."""
        kinds = sorted(
            {
                f"{w.tensor.qparams.dtype} {w.tensor.qparams.granularity}"
                + (" (stored as uint8 code + 128)" if w.offset else "")
                for w in self.weights
            }
        )
        acts = sorted({qp.dtype for qp in self.activations.values()})
        lines = [
            f"{self.path}: ONNX opset {self.opset}, {human_bytes(self.file_bytes)}; torch.onnx export "
            f"{self.export_s:.1f} s, total {self.total_s:.1f} s",
            f"weights: {len(self.weights)} Linear weights as DequantizeLinear of {', '.join(kinds) or '-'}",
            f"inputs: {len(self.activations)} Linear inputs through QuantizeLinear/DequantizeLinear"
            + (f" ({', '.join(acts)} per tensor)" if acts else "")
            + ("" if self.calibration_s is None else f", calibrated in {self.calibration_s:.1f} s"),
            f"checked: {self.runtime or 'read back with onnx; not run by onnxruntime'}",
        ]
        lines += [f"left in float: {m} ({why})" for m, why in self.left.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def fake_quantized(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` that computes in PyTorch what the written ONNX model computes.

        Each exported Linear weight is replaced by mono-quant's dequantize of its
        codes, and each quantized input goes through core's ``quantize`` then
        ``dequantize`` with its QParams. ``model`` is not modified.
        """
        fake = copy.deepcopy(model)
        modules = dict(fake.named_modules())
        with torch.no_grad():
            for w in self.weights:
                weight = modules[w.module].weight
                assert isinstance(weight, torch.Tensor)
                weight.copy_(w.tensor.dequantize(weight.dtype))
        for name, qp in self.activations.items():
            modules[name].register_forward_pre_hook(_fake_quantize_input(qp, name))
        return fake.eval()


def _fake_quantize_input(qp: QParams, name: str) -> Any:
    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        return (dequantize(quantize(x, qp, name=f"{name}:input"), qp, dtype=x.dtype), *args[1:])

    return hook


def check_written(path: Path, report: OnnxExport, *, verify: bool) -> None:
    """Read ``path`` back: every weight must hold mono-quant's codes and QParams, bit for bit."""
    import numpy as np
    import onnx

    model = onnx.load(str(path))
    for w in report.weights:
        codes, scale, zp, axis = read_dq(model.graph, w.dequantized)
        qp = w.tensor.qparams
        assert qp.scale is not None and qp.zero_point is not None
        want = (w.tensor.codes.t() if w.transposed else w.tensor.codes).contiguous().cpu().numpy()
        stored_dtype = np.dtype(np.uint8) if w.offset else want.dtype
        same = (
            codes.dtype == stored_dtype
            and np.array_equal(codes.astype(np.int16) - w.offset, want)
            and scale.dtype == np.float32
            and np.array_equal(scale.view(np.uint32), qp.scale.cpu().numpy().view(np.uint32))
            and zp.dtype == stored_dtype
            and np.array_equal(zp.astype(np.int32) - w.offset, qp.zero_point.cpu().numpy())
            and axis == w.axis
        )
        if not same:
            raise RefusedError(
                f"the DequantizeLinear written for {w.module!r} differs from mono-quant's codes or qparams; "
                f"nothing was written."
            )
    if not verify:
        return
    try:
        import onnxruntime as ort  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        report.notes.append("not run by onnxruntime: it is not installed (pip install onnxruntime)")
        return
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types; the message says what it could not load
        why = " ".join(str(exc).split())[:300]
        raise RefusedError(
            f"onnxruntime {ort.__version__} cannot load the exported model ({why}); nothing was written."
        ) from exc
    for w, got in zip(report.weights, _runtime_weights(model, report.weights, ort), strict=True):
        ours = w.tensor.dequantize(torch.float32)
        want_f = (ours.t() if w.transposed else ours).contiguous().cpu().numpy()
        if got.dtype != np.float32 or not np.array_equal(got.view(np.uint32), want_f.view(np.uint32)):
            raise RefusedError(
                f"onnxruntime dequantizes the weight of {w.module!r} to other values than mono-quant's "
                f"dequantize; nothing was written."
            )
    report.runtime = (
        f"onnxruntime {ort.__version__} loads it; its dequantized weights equal mono-quant's, bit for bit"
    )


def _runtime_weights(model: onnx.ModelProto, weights: Sequence[OnnxWeight], ort: Any) -> list[Any]:
    """The weights as onnxruntime dequantizes them: the weights' DequantizeLinear nodes alone, run."""
    from onnx import TensorProto, helper

    wanted = {w.dequantized for w in weights}
    nodes = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in wanted]
    needed = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes,
        "mono_quant_weights",
        [],
        [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes],
        [i for i in model.graph.initializer if i.name in needed],
    )
    small = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(small.SerializeToString(), options, providers=["CPUExecutionProvider"])
    by_name = dict(zip([n.output[0] for n in nodes], session.run(None, {}), strict=True))
    return [by_name[w.dequantized] for w in weights]
