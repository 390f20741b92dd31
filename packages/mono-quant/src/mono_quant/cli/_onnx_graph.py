"""The QDQ rewrite of an exported ONNX graph: where each Linear weight is, and the Q/DQ nodes put around it.

Everything here works on ``onnx`` protos and numpy arrays; :mod:`mono_quant.cli._onnx`
calls it. A Linear weight is found by what it *is*, not by a name the exporter
chose: the initializer whose bytes equal the PyTorch weight (``(out, in)``) or
its transpose (``(in, out)``), read as the ``B`` input of ``MatMul``/``Gemm``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mono_quant.cli._errors import RefusedError
from mono_quant.core import QParams

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ENCODABLE_DTYPES",
    "Site",
    "find_sites",
    "insert_input_qdq",
    "quantize_weight",
    "read_dq",
    "used_names",
]

#: mono-quant dtype -> numpy dtype of QuantizeLinear/DequantizeLinear (opset 13+).
ENCODABLE_DTYPES: dict[str, Any] = {"int8": np.int8, "uint8": np.uint8}


@dataclass(frozen=True)
class Site:
    """Where a Linear module's weight lives in the graph.

    ``initializer`` holds the float weight; ``transposed`` says it is stored
    ``(in, out)`` (the ``B`` of a ``MatMul``, or of a ``Gemm`` without ``transB``)
    rather than PyTorch's ``(out, in)``; ``consumers`` are the indices of the
    ``MatMul``/``Gemm`` nodes that read it as ``B``, whose ``A`` is the module's input.
    """

    module: str
    initializer: str
    transposed: bool
    consumers: tuple[int, ...]


def _raw(init: onnx.TensorProto) -> bytes:
    from onnx import numpy_helper

    data: bytes = init.raw_data if init.raw_data else numpy_helper.to_array(init).tobytes()
    return data


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _weight_layouts(graph: onnx.GraphProto) -> dict[str, tuple[bool | None, list[int]]]:
    """Initializer name -> (stored ``(in, out)``?, indices of the nodes that read it).

    The layout is ``None`` when a reader is not the ``B`` of a ``MatMul``/``Gemm``,
    or two readers disagree: such an initializer is not a Linear weight here.
    """
    out: dict[str, tuple[bool | None, list[int]]] = {}
    names = {i.name for i in graph.initializer}
    for index, node in enumerate(graph.node):
        for slot, name in enumerate(node.input):
            if name not in names:
                continue
            layout: bool | None = None
            if node.op_type == "MatMul" and slot == 1:
                layout = True
            elif node.op_type == "Gemm" and slot == 1:
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                layout = not trans_b
            seen, consumers = out.get(name, (layout, []))
            if seen != layout:
                layout = None
            out[name] = (layout, [*consumers, index])
    return out


def find_sites(graph: onnx.GraphProto, weights: Mapping[str, torch.Tensor]) -> dict[str, list[Site]]:
    """Module name -> the initializers holding its weight (``weights``: module -> float32 ``(out, in)``).

    A module whose weight the exporter transformed (folded into another constant,
    read by an op other than ``MatMul``/``Gemm``) has no site.
    """
    layouts = _weight_layouts(graph)
    by_digest: dict[bytes, list[onnx.TensorProto]] = {}
    for init in graph.initializer:
        layout = layouts.get(init.name, (None, []))[0]
        if layout is not None and len(init.dims) == 2 and init.data_type == 1:  # FLOAT
            by_digest.setdefault(_digest(_raw(init)), []).append(init)
    sites: dict[str, list[Site]] = {}
    for module, w in weights.items():
        w = w.detach().to("cpu", torch.float32)
        for transposed in (False, True):
            data = (w.t() if transposed else w).contiguous().numpy().tobytes()
            for init in by_digest.get(_digest(data), []):
                layout, consumers = layouts[init.name]
                shape = tuple(w.shape[::-1] if transposed else w.shape)
                if layout is transposed and tuple(init.dims) == shape and _raw(init) == data:
                    sites.setdefault(module, []).append(Site(module, init.name, transposed, tuple(consumers)))
    return sites


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every name in ``graph`` (values, initializers, nodes): new names must avoid them."""
    out = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {o.name for o in graph.output}
    for node in graph.node:
        out.update(node.input)
        out.update(node.output)
        out.add(node.name)
    return out


def _qparam_arrays(qp: QParams, np_dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    assert qp.scale is not None and qp.zero_point is not None
    scale = qp.scale.detach().to("cpu").contiguous().numpy()
    zp32 = qp.zero_point.detach().to("cpu").numpy()
    info = np.iinfo(np_dtype)
    if zp32.size and (int(zp32.min()) < info.min or int(zp32.max()) > info.max):
        raise RefusedError(
            f"a {qp.dtype} zero-point must lie in [{info.min}, {info.max}]; got {int(zp32.min())} to "
            f"{int(zp32.max())}."
        )
    return scale, zp32.astype(np_dtype)


def quantize_weight(
    graph: onnx.GraphProto,
    site: Site,
    codes: torch.Tensor,
    qp: QParams,
    *,
    onnx_axis: int | None,
    taken: set[str],
    offset: int = 0,
) -> tuple[onnx.NodeProto, str]:
    """Replace the float initializer of ``site`` with ``codes`` and a DequantizeLinear of the same name.

    ``codes`` are PyTorch's ``(out, in)``; they are stored transposed where the
    site is. With ``offset`` (128, int8 codes only) codes and zero-point are
    stored as uint8 ``value + 128``: ``(q + 128) - (zp + 128)`` is ``q - zp``,
    so DequantizeLinear gives the same floats. Returns the new node (the caller
    puts it at the graph's start) and the name of the codes initializer.
    """
    from onnx import helper, numpy_helper

    np_dtype = ENCODABLE_DTYPES[qp.dtype]
    laid_out = (codes.t() if site.transposed else codes).contiguous().cpu()
    scale, zp = _qparam_arrays(qp, np_dtype)
    if offset:
        assert qp.dtype == "int8" and offset == 128
        stored = (laid_out.numpy().astype(np.int16) + offset).astype(np.uint8)
        zp = (zp.astype(np.int16) + offset).astype(np.uint8)
    else:
        stored = laid_out.numpy().astype(np_dtype, copy=False)
    base = site.initializer
    names = [_unique(f"{base}_{what}", taken) for what in ("quantized", "scale", "zero_point")]
    # Deleted in place: rebuilding the list would copy every initializer's data.
    index = next(i for i, init in enumerate(graph.initializer) if init.name == base)
    del graph.initializer[index]
    for value, name in zip((stored, scale, zp), names, strict=True):
        graph.initializer.append(numpy_helper.from_array(value, name))
    listed = [i for i, v in enumerate(graph.input) if v.name == base]  # old IRs list initializers as inputs
    for i in reversed(listed):
        del graph.input[i]
    node = helper.make_node(
        "DequantizeLinear", names, [base], name=_unique(f"{base}_DequantizeLinear", taken)
    )
    if onnx_axis is not None:
        node.attribute.append(helper.make_attribute("axis", onnx_axis))
    return node, names[0]


def insert_input_qdq(
    graph: onnx.GraphProto, consumer: onnx.NodeProto, module: str, qp: QParams, *, taken: set[str]
) -> list[onnx.NodeProto]:
    """QuantizeLinear -> DequantizeLinear on ``consumer``'s input ``A`` (the module's input), per tensor.

    Returns the two nodes; the caller puts them right before ``consumer``.
    """
    from onnx import helper, numpy_helper

    np_dtype = ENCODABLE_DTYPES[qp.dtype]
    scale, zp = _qparam_arrays(qp, np_dtype)
    s_name = _unique(f"{module}.input_scale", taken)
    z_name = _unique(f"{module}.input_zero_point", taken)
    graph.initializer.extend([numpy_helper.from_array(scale, s_name), numpy_helper.from_array(zp, z_name)])
    source = consumer.input[0]
    q_out = _unique(f"{module}.input_quantized", taken)
    dq_out = _unique(f"{module}.input_dequantized", taken)
    q = helper.make_node(
        "QuantizeLinear", [source, s_name, z_name], [q_out], name=_unique(f"{module}.input_Q", taken)
    )
    dq = helper.make_node(
        "DequantizeLinear", [q_out, s_name, z_name], [dq_out], name=_unique(f"{module}.input_DQ", taken)
    )
    consumer.input[0] = dq_out
    return [q, dq]


def read_dq(graph: onnx.GraphProto, output: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """``(codes, scale, zero_point, axis)`` of the DequantizeLinear that writes ``output``."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    node = next((n for n in graph.node if n.op_type == "DequantizeLinear" and output in n.output), None)
    if node is None:
        raise RefusedError(f"the written model has no DequantizeLinear writing {output!r}.")
    arrays = [numpy_helper.to_array(inits[name]) for name in node.input]
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    return arrays[0], arrays[1], arrays[2], axis
