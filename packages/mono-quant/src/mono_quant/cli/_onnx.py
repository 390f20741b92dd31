"""ONNX QDQ export: the float model through ``torch.onnx``, its Linear weights and calibrated inputs as Q/DQ.

Needs the ``onnx`` extra (``pip install 'mono-quant[onnx]'``: onnx, and onnxscript
for ``torch.onnx``'s exporter); onnxruntime, when installed, checks the file
before it is published. The graph rewrite itself is in ``_onnx_graph``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata as md
import importlib.util
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mono_quant.cli._api import producer, quantize_model
from mono_quant.cli._atomic import atomic_output
from mono_quant.cli._checkpoint import QuantizedCheckpoint
from mono_quant.cli._errors import RefusedError, UsageError
from mono_quant.cli._onnx_graph import (
    ENCODABLE_DTYPES,
    Site,
    find_sites,
    insert_input_qdq,
    quantize_weight,
    used_names,
)
from mono_quant.cli._onnx_report import OnnxExport, OnnxWeight, check_written
from mono_quant.cli._options import option
from mono_quant.cli._plan import make_plan
from mono_quant.cli._select import select_modules
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import Granularity, PerChannel, PerTensor, QParams

if TYPE_CHECKING:
    import onnx

    from mono_quant.observers import CalibrationResult

__all__ = ["OnnxExport", "OnnxWeight", "export_onnx"]

#: ``DequantizeLinear`` with ``axis`` (per channel) needs opset 13.
MIN_OPSET = 13
#: One protobuf holds at most this; larger models need ONNX external data, which this export does not write.
_PROTOBUF_LIMIT = 2**31 - 1


def _import_onnx() -> Any:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:  # onnxscript: torch.onnx's exporter imports it; fail here, with the fix
        raise UsageError(
            f"ONNX export needs onnx and onnxscript ({' and '.join(missing)} not installed): "
            f"pip install 'mono-quant[onnx]'."
        )
    import onnx

    return onnx


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, warnings and log records: an error is reported, the rest is noise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _check_weight_options(dtype: str, gran: Granularity) -> None:
    if dtype not in ENCODABLE_DTYPES:
        raise RefusedError(
            f"ONNX export encodes weights as {' or '.join(ENCODABLE_DTYPES)} (DequantizeLinear, opset 13+); "
            f"got dtype {dtype!r}. Use {option('dtype', 'int8')}."
        )
    if not isinstance(gran, (PerTensor, PerChannel)) or (
        isinstance(gran, PerChannel) and gran.axis not in (0, 1, -1, -2)
    ):
        raise RefusedError(
            f"ONNX export encodes a Linear weight per tensor or per channel (axis 0 or 1 of its (out, in) "
            f"shape); got {gran}. Use {option('granularity', 'per-channel')}."
        )


def _check_activations(
    activations: CalibrationResult | Mapping[str, QParams] | None, linear: set[str]
) -> dict[str, QParams]:
    if activations is None:
        return {}
    if isinstance(activations, Mapping):
        table = dict(activations)
    else:
        if activations.outputs:
            shown = ", ".join(sorted(activations.outputs)[:3])
            raise UsageError(
                f"the calibration holds output activations ({shown}, ...); ONNX export puts "
                f"QuantizeLinear/DequantizeLinear on Linear inputs only. Calibrate with "
                f"CalibrationPlan(outputs=False)."
            )
        table = dict(activations.inputs)
    for module, qp in table.items():
        if module not in linear:
            shown = ", ".join(repr(n) for n in sorted(linear)[:3])
            raise UsageError(
                f"activation qparams are given for {module!r}, which is not a Linear module of this model "
                f"(its Linear modules are named like {shown}); calibrate the model being exported."
            )
        if qp.is_float or not qp.affine or qp.dtype not in ENCODABLE_DTYPES:
            raise RefusedError(
                f"the input of {module!r} is calibrated for dtype {qp.dtype!r}; ONNX QuantizeLinear here "
                f"encodes {' or '.join(ENCODABLE_DTYPES)} (affine). Calibrate with dtype 'uint8' or 'int8'."
            )
        if not isinstance(qp.granularity, PerTensor):
            raise RefusedError(
                f"the input of {module!r} is calibrated {qp.granularity}; ONNX export quantizes inputs per "
                f"tensor (what onnxruntime fuses into integer kernels). Calibrate with PerTensor()."
            )
    return table


def _example(example_inputs: object, dynamic: bool) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """``(args, kwargs, dynamic_shapes)`` for ``torch.onnx.export``."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, Mapping):
        args: tuple[Any, ...] = ()
        kwargs = dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        raise UsageError(
            f"example_inputs must be a tensor, a tuple of positional inputs or a mapping of keyword inputs "
            f"(a tokenizer's output); got {type(example_inputs).__name__}."
        )
    if not dynamic:
        return args, kwargs, None
    auto = torch.export.Dim.AUTO

    def every_axis(v: object) -> Any:
        return {i: auto for i in range(v.dim())} if isinstance(v, torch.Tensor) else None

    shapes = {k: every_axis(v) for k, v in kwargs.items()} if kwargs else tuple(every_axis(a) for a in args)
    return args, kwargs, shapes


def _export_float(
    model: torch.nn.Module, example_inputs: object, *, opset: int, dynamic: bool, names: Sequence[str] | None
) -> onnx.ModelProto:
    args, kwargs, shapes = _example(example_inputs, dynamic)
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model,
                args,
                kwargs=kwargs or None,
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=shapes,
                output_names=None if names is None else list(names),
                optimize=True,  # folds PyTorch's weight transposes: each weight is one MatMul input
                verbose=False,
            )
    except Exception as exc:
        root: BaseException = exc
        while root.__cause__ is not None:  # the exporter wraps the reason in a page of generic advice
            root = root.__cause__
        why = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(root)).split())[:300]
        raise RefusedError(
            f"torch.onnx (torch {torch.__version__}) cannot export the model: {type(root).__name__}: {why}"
        ) from exc
    finally:
        for m, was in training.items():
            m.train(was)
    assert program is not None
    proto: onnx.ModelProto = program.model_proto
    return proto


def _onnx_axis(qt: QuantizedTensor, transposed: bool) -> int | None:
    gran = qt.qparams.granularity
    if not isinstance(gran, PerChannel):
        return None
    axis = gran.axis % 2
    return 1 - axis if transposed else axis


def export_onnx(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | tuple[Any, ...] | Mapping[str, Any],
    output: str | Path,
    *,
    activations: CalibrationResult | Mapping[str, QParams] | None = None,
    scheme: str = "symmetric",
    dtype: str = "int8",
    granularity: Granularity | str | None = "per-channel",
    axis: int | None = None,
    profile: str | None = None,
    exclude: Iterable[str] = (),
    output_names: Sequence[str] | None = None,
    dynamic: bool = True,
    opset: int = 18,
    verify: bool = True,
    force: bool = False,
    store_int8_as: str = "uint8",
) -> OnnxExport:
    """Write ``model`` as a QDQ ONNX file: Linear weights as integer codes, calibrated inputs fake-quantized.

    The float32 model is exported by ``torch.onnx`` (the dynamo exporter) on
    ``example_inputs``: a tensor or tuple (positional) or a mapping (keyword, such
    as a tokenizer's output); with ``dynamic`` every axis of every input may vary
    (examples of size 1 along an axis fix it). Each ``Linear`` weight (less
    ``exclude``, globs over weight names as in :func:`quantize_model`) is then
    stored as mono-quant's codes with a ``DequantizeLinear`` of its scale and
    zero-point, bit for bit. ``scheme``/``dtype``/``granularity`` default to
    int8 symmetric per output channel, what onnxruntime's quantizer writes. The
    codes are laid out as the graph reads them: ``(in, out)`` for a ``MatMul``,
    where the per-channel ``axis`` is 1. Each module of ``activations``
    (``calibrate(...)``'s result, or module name -> QParams; uint8 or int8, per
    tensor) gets a ``QuantizeLinear`` -> ``DequantizeLinear`` pair on its input.

    ``store_int8_as``: int8 weight codes are stored by default as uint8
    ``code + 128`` with zero-point ``+ 128``, which DequantizeLinear turns into
    the same floats. onnxruntime's fused uint8 x int8 kernels on x86 CPUs
    without VNNI (AVX2) saturate 16-bit pair sums and compute wrong outputs
    (measured: 99 % of rows off by up to 0.08 on a 3-layer MLP); its
    uint8 x uint8 kernels are exact everywhere. ``"int8"`` keeps the signed codes
    (zero-point 0), for runtimes that want signed symmetric weights (TensorRT).

    The output rules are ``mono-quant quantize``'s: written atomically; an
    existing file is replaced only with ``force``. Before publishing, the file is
    read back and every weight's codes, scale and zero-point compared with
    mono-quant's; with ``verify`` and onnxruntime installed, onnxruntime loads it
    and its dequantized weights must equal mono-quant's dequantize bit for bit.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> out = Path(tempfile.mkdtemp()) / "model.onnx"
    >>> report = export_onnx(model, torch.randn(2, 16), out)
    >>> [(w.module, w.tensor.codes.dtype, w.axis) for w in report.weights]
    [('0', torch.int8, 0), ('2', torch.int8, 0)]
    """
    start = time.perf_counter()
    onnx = _import_onnx()
    if store_int8_as not in ("uint8", "int8"):
        raise UsageError(f"store_int8_as must be 'uint8' or 'int8'; got {store_int8_as!r}.")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise UsageError(
            f"opset must be an int of at least {MIN_OPSET} (per-axis DequantizeLinear); got {opset!r}."
        )
    options: dict[str, Any] = {
        "scheme": scheme, "dtype": dtype, "granularity": granularity, "axis": axis, "profile": profile,
        "exclude": tuple(exclude),
    }  # fmt: skip
    plan = make_plan(**options)
    _check_weight_options(plan.dtype.name, plan.granularity)
    names, passed = select_modules(model, (torch.nn.Linear,))
    if not names:
        raise UsageError(f"{type(model).__name__} has no Linear module: ONNX export would quantize nothing.")
    modules = dict(model.named_modules())
    weights = {n.removesuffix(".weight"): modules[n.removesuffix(".weight")].weight for n in names}
    for module, w in weights.items():
        if w.dtype != torch.float32:
            raise UsageError(
                f"ONNX export takes a float32 model; '{module}.weight' is {w.dtype}. Export model.float()."
            )
    acts = _check_activations(activations, set(weights))
    path = Path(output)
    with atomic_output(path, force=force) as tmp:
        qc = quantize_model(model, types=(torch.nn.Linear,), **options)
        t0 = time.perf_counter()
        proto = _export_float(model, example_inputs, opset=opset, dynamic=dynamic, names=output_names)
        export_s = time.perf_counter() - t0
        shift = 128 if store_int8_as == "uint8" else 0
        rows = _rewrite(proto, qc, find_sites(proto.graph, weights), acts, int8_offset=shift)
        provenance = {
            "producer": producer(plan),
            "weights": plan.describe(),
            "activations": {m: qp.metadata() for m, qp in acts.items()},
            "torch": torch.__version__,
            "onnx": md.version("onnx"),
        }
        proto.metadata_props.add(key="mono_quant", value=json.dumps(provenance, sort_keys=True))
        size = proto.ByteSize()
        if size > _PROTOBUF_LIMIT:
            raise RefusedError(
                f"the quantized model is {size / 2**30:.2f} GiB; one ONNX protobuf holds at most 2 GiB, and "
                f"this export does not write external data."
            )
        onnx.checker.check_model(proto)
        onnx.save_model(proto, tmp)
        del proto
        tensors = qc.report.tensors if qc.report is not None else []
        sqnr = {t.name: t.sqnr_db for t in tensors}
        rows = [dataclasses.replace(w, sqnr_db=sqnr.get(f"{w.module}.weight")) for w in rows]
        left = {t.name.removesuffix(".weight"): t.reason for t in tensors if t.name in names}
        left = {m: why for m, why in left.items() if m not in {w.module for w in rows}}
        left.update({m or "<root>": why for m, why in passed})
        report = OnnxExport(str(path), opset, rows, acts, left, export_s=export_s)
        check_written(tmp, report, verify=verify)
        report.file_bytes = tmp.stat().st_size
    seconds = getattr(activations, "seconds", None)
    report.calibration_s = float(seconds) if isinstance(seconds, (int, float)) else None
    report.total_s = time.perf_counter() - start
    return report


def _rewrite(
    proto: onnx.ModelProto,
    qc: QuantizedCheckpoint,
    sites: Mapping[str, list[Site]],
    acts: Mapping[str, QParams],
    *,
    int8_offset: int = 0,
) -> list[OnnxWeight]:
    """Weights to DequantizeLinear, inputs through Q/DQ; the graph's nodes stay in topological order.

    ``int8_offset`` (128): int8 weight codes are stored as uint8 ``code + 128``.
    """
    graph = proto.graph
    taken = used_names(graph)
    front: list[onnx.NodeProto] = []
    rows: list[OnnxWeight] = []
    written: dict[str, tuple[str, QuantizedTensor]] = {}
    for name in qc.quantized_names:
        module = name.removesuffix(".weight")
        qt = qc[name]
        assert isinstance(qt, QuantizedTensor)
        if not sites.get(module):
            raise RefusedError(
                f"{name!r} is not in the exported graph as the B input of a MatMul or Gemm (the exporter "
                f"transformed it), so its DequantizeLinear has no place. Leave it out "
                f"({option('exclude', name)})."
            )
        for site in sites[module]:
            axis = _onnx_axis(qt, site.transposed)
            offset = int8_offset if qt.qparams.dtype == "int8" else 0
            if site.initializer not in written:  # tied weights share one initializer: quantized once
                node, codes = quantize_weight(
                    graph, site, qt.codes, qt.qparams, onnx_axis=axis, taken=taken, offset=offset
                )
                front.append(node)
                written[site.initializer] = (codes, qt)
            codes, first = written[site.initializer]
            if not first.equals(qt):
                raise RefusedError(
                    f"{name!r} and another weight are one initializer in the exported graph, but quantize "
                    f"to different codes or qparams; export them with the same options."
                )
            rows.append(OnnxWeight(module, codes, site.initializer, site.transposed, axis, qt, offset=offset))
    # The MatMul/Gemm nodes whose input A each module's input is; modules that share one
    # weight initializer share its nodes, and one graph cannot quantize their inputs apart.
    before: dict[int, tuple[str, QParams]] = {}
    for module, qp in acts.items():
        if not sites.get(module):
            raise RefusedError(
                f"the input of {module!r} is calibrated, but its weight is not in the exported graph as the "
                f"B input of a MatMul or Gemm, so its input cannot be found."
            )
        for site in sites[module]:
            for index in site.consumers:
                other = before.setdefault(index, (module, qp))
                if not other[1].equals(qp):
                    raise RefusedError(
                        f"{module!r} and {other[0]!r} hold bit-identical weights that the exported graph "
                        f"shares, but their inputs are calibrated differently: the graph cannot tell them "
                        f"apart."
                    )
    ordered: list[onnx.NodeProto] = list(front)
    for index, node in enumerate(list(graph.node)):
        if index in before:
            module, qp = before[index]
            ordered += insert_input_qdq(graph, node, module, qp, taken=taken)
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    return rows
