"""The compressed-tensors layout vLLM loads: ``weight_packed`` int32, ``weight_scale``, ``weight_shape``.

Both int4 group-wise and int8 per-channel go out as ``pack-quantized``: the
format compressed-tensors itself infers for weight-only integer schemes (and
vLLM's W4A16/W8A16 kernels read). Codes are moved to the signed range of
``num_bits`` (an unsigned dtype shifts codes and zero-points by ``2**(bits-1)``,
which leaves ``q - zero_point`` unchanged), offset by ``2**(bits-1)`` and packed
densely, element ``i`` of a row at bit ``i * bits`` of the little-endian int32
stream. That equals core's ``pack`` with a ``Packing(bits, 8 // bits,
"uint8", order="low_first", offset=2**(bits-1))`` padded to whole int32 words
and viewed as int32, which is how it is computed here. The asymmetric zero-point
is packed the same way along dim 0. Tests check every case against the
compressed-tensors library's own decompression, bit for bit.

The format holds affine integer codes, ``(q - zero_point) * scale``, and nothing
else: :func:`check_scheme` refuses codebook dtypes (NF4) and non-affine schemes
before any work, and :func:`encode` decodes every tensor it wrote the way a
compressed-tensors reader does and refuses if that differs, in any bit, from
mono-quant's dequantize. An export either holds exactly what was computed, or
there is none.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import torch

from mono_quant.cli._errors import RefusedError, UsageError
from mono_quant.cli._model import ModelLayout
from mono_quant.cli._options import option
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import (
    Granularity,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QuantDtype,
    Scheme,
    pack,
    unpack,
)

__all__ = [
    "BITS",
    "COMPRESSED_TENSORS_VERSION",
    "FORMAT",
    "QuantizationConfigBuilder",
    "check",
    "check_scheme",
    "decode",
    "dynamic_activations",
    "encode",
    "pack_int32",
    "unpack_int32",
]

FORMAT = "compressed-tensors"
PACK_QUANTIZED = "pack-quantized"
#: Unpacked int8 codes, what compressed-tensors writes for W8A8.
INT_QUANTIZED = "int-quantized"
#: The compressed-tensors version whose checkpoints this writer reproduces (llm-compressor 0.14's output,
#: kept as golden files) and writes in ``quantization_config.version``.
COMPRESSED_TENSORS_VERSION = "0.19.0"
#: Bit widths written (compressed-tensors reads 1..8; these divide a byte evenly).
BITS = (2, 4, 8)


def _layout(bits: int) -> QuantDtype:
    half = 1 << (bits - 1)
    return QuantDtype(
        f"compressed-tensors-int{bits}",
        bits,
        True,
        -half,
        half - 1,
        "int8",
        packing=Packing(
            bits=bits, per_container=8 // bits, container="uint8", order="low_first", offset=half
        ),
    )


def pack_int32(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed ``bits``-bit codes (rows along the last axis) packed as compressed-tensors int32 words.

    >>> word = pack_int32(torch.tensor([[-8, -7, 0, 1, 2, 3, 4, 7]], dtype=torch.int8), 4)
    >>> hex(int(word) & 0xFFFFFFFF)  # stored nibbles 0, 1, 8, 9, 10, 11, 12, 15, first lowest
    '0xfcba9810'
    """
    if sys.byteorder != "little":  # pragma: no cover - torch runs on little-endian hosts
        raise UsageError("the compressed-tensors writer needs a little-endian host.")
    packed = pack(codes.to(torch.int8), _layout(bits))
    pad = (-packed.shape[-1]) % 4
    if pad:
        packed = torch.cat([packed, packed.new_zeros(*packed.shape[:-1], pad)], dim=-1)
    return packed.contiguous().view(torch.int32)


def unpack_int32(words: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`pack_int32`: the signed codes of each row (``cols`` of them), as int8.

    >>> codes = torch.tensor([[-8, -7, 0, 1, 2, 3, 4, 7, 5]], dtype=torch.int8)
    >>> torch.equal(unpack_int32(pack_int32(codes, 4), 4, 9), codes)
    True
    """
    layout = _layout(bits)
    packed = words.contiguous().view(torch.uint8)[..., : -(-cols * bits // 8)]
    return unpack(packed.contiguous(), layout, (*words.shape[:-1], cols))


def _signed(t: torch.Tensor, qd: QuantDtype) -> torch.Tensor:
    if qd.signed:
        return t.to(torch.int8)
    return (t.to(torch.int16) - (1 << (qd.bits - 1))).to(torch.int8)


def check_scheme(scheme: Scheme, qd: QuantDtype) -> None:
    """Refuse (:class:`RefusedError`) a scheme or dtype whose codes are not affine integers.

    >>> from mono_quant.core import get_dtype, get_scheme
    >>> check_scheme(get_scheme("symmetric"), get_dtype("int8"))
    """
    why = ""
    if qd.is_float:
        why = f"dtype {qd.name!r} is a float cast, not integer codes"
    elif qd.kind != "int":
        why = f"dtype {qd.name!r} holds {qd.kind} codes, not integers"
    elif not qd.affine:
        why = f"dtype {qd.name!r} is a codebook (affine=False): its codes index a table, not an even grid"
    elif not scheme.capabilities.affine:
        why = f"scheme {scheme.name!r} is not affine: it quantizes and dequantizes with its own formula"
    elif qd.bits not in BITS:
        why = f"dtype {qd.name!r} has {qd.bits} bits; the format is written for {', '.join(map(str, BITS))}"
    if why:
        raise RefusedError(
            f"compressed-tensors pack-quantized holds affine integer codes, (q - zero_point) * scale, and "
            f"{why}. Writing it there would decode to different values. Formats that can hold scheme "
            f"{scheme.name!r} with dtype {qd.name!r}: native ({option('format', 'native')})."
        )


def check(name: str, shape: tuple[int, ...], qd: QuantDtype, gran: Granularity) -> str:
    """The compressed-tensors strategy for this weight, or :class:`RefusedError` saying what to change.

    >>> from mono_quant.core import get_dtype
    >>> check("fc.weight", (8, 256), get_dtype("int4"), PerGroup(-1, 128))
    'group'
    """
    if not name.endswith(".weight") or len(shape) != 2:
        what = "is not named *.weight" if not name.endswith(".weight") else f"has shape {shape}, not 2-D"
        raise RefusedError(
            f"{name!r} {what}; compressed-tensors pack-quantized holds 2-D <module>.weight tensors only. "
            f"Leave it out ({option('exclude', name)}) or use {option('format', 'native')}."
        )
    if qd.is_float or qd.bits not in BITS:
        raise RefusedError(
            f"{name!r}: dtype {qd.name!r} does not fit compressed-tensors pack-quantized, written here for "
            f"{', '.join(map(str, BITS))}-bit integers. Use int4/int8 (or uint4/uint8), or "
            f"{option('format', 'native')}."
        )
    cols = shape[1]
    if isinstance(gran, PerGroup) and gran.axis in (1, -1) and cols % gran.group_size == 0:
        return "group"
    if isinstance(gran, PerChannel) and gran.axis in (0, -2):
        return "channel"
    if isinstance(gran, PerTensor):
        return "tensor"
    raise RefusedError(
        f"{name!r}: compressed-tensors holds per-group along the last axis with a group size that divides "
        f"{cols}, per-channel along axis 0, or per-tensor; got {gran}. Change "
        f"{option('granularity', None)}/{option('axis', None)}/{option('group_size', None)}, or use "
        f"{option('format', 'native')}."
    )


#: What a module's input activations are: ``"dynamic"`` (per token, computed at run time) or
#: the static per-tensor QParams calibration gave (``mono-quant calibrate``).
Activation = Literal["dynamic"] | QParams


def encode(
    name: str, qt: QuantizedTensor, *, symmetric: bool, activation: Activation | None = None
) -> tuple[list[tuple[str, torch.Tensor]], dict[str, Any]]:
    """The ``<module>.weight*`` (and ``<module>.input_*``) tensors of the weight ``name``; its config group.

    Weights only: ``pack-quantized``. With ``activation`` (W8A8): ``int-quantized``,
    the int8 codes stored as ``<module>.weight`` and, for static activations,
    ``<module>.input_scale`` (and ``input_zero_point`` when not symmetric).
    ``symmetric`` (the scheme's claim) drops the zero-point when it is all zero
    after the shift to the signed range; otherwise it is stored. The tensors are
    decoded as a compressed-tensors reader would (:func:`decode`) and must give
    exactly ``qt.dequantize(torch.float32)``, else :class:`RefusedError`.
    """
    qd, qp = qt.quant_dtype, qt.qparams
    strategy = check(name, qt.shape, qd, qp.granularity)
    assert qp.scale is not None and qp.zero_point is not None
    rows, cols = qt.shape
    group_size = None
    if strategy == "group":
        assert isinstance(qp.granularity, PerGroup)
        group_size = qp.granularity.group_size
        scale = qp.scale.reshape(rows, cols // group_size)
        zero_point = qp.zero_point.reshape(rows, cols // group_size)
    elif strategy == "channel":
        scale, zero_point = qp.scale.reshape(rows, 1), qp.zero_point.reshape(rows, 1)
    else:
        scale, zero_point = qp.scale.reshape(1), qp.zero_point.reshape(1)
    zp = _signed(zero_point, qd)
    keep_zp = not (symmetric and not bool(zp.any()))
    # In the model's dtype, as llm-compressor stores it and transformers' default load path expects,
    # whenever that holds the scale exactly (the compressed-tensors profile computes it so).
    narrow = scale.to(qt.orig_dtype)
    if qt.orig_dtype.is_floating_point and torch.equal(narrow.to(torch.float32), scale):
        scale = narrow
    if activation is None:
        out = [
            (f"{name}_packed", pack_int32(_signed(qt.codes, qd), qd.bits)),
            (f"{name}_scale", scale.contiguous()),
            (f"{name}_shape", torch.tensor([rows, cols], dtype=torch.int64)),
        ]
        if keep_zp:
            stored_zp = (
                zp if strategy == "tensor" else pack_int32(zp.t().contiguous(), qd.bits).t().contiguous()
            )
            out.append((f"{name}_zero_point", stored_zp))
    else:
        out = [(name, _signed(qt.codes, qd).contiguous()), (f"{name}_scale", scale.contiguous())]
        if keep_zp:
            out.append((f"{name}_zero_point", zp.contiguous()))
    args: dict[str, Any] = {
        "actorder": None,
        "block_structure": None,
        "dynamic": False,
        "group_size": group_size,
        "num_bits": qd.bits,
        "observer": "memoryless_minmax",
        "observer_kwargs": {},
        "scale_dtype": None,
        "strategy": strategy,
        "symmetric": not keep_zp,
        "type": "int",
        "zp_dtype": "torch.int8" if keep_zp else None,  # what llm-compressor records for stored zero-points
    }
    group: dict[str, Any] = {"format": PACK_QUANTIZED, "weights": args, "input_activations": None}
    if activation is not None:
        group["format"] = INT_QUANTIZED
        group["input_activations"], inputs = _activation(
            name.removesuffix(".weight"), activation, qt.orig_dtype
        )
        out += inputs
    _verify(name, qt, decode(name, dict(out), args))
    return out, group


def dynamic_activations(kind: Literal["int", "float"]) -> dict[str, Any]:
    """The ``input_activations`` of 8-bit activations quantized per token at run time (llm-compressor's).

    >>> dynamic_activations("float")["strategy"], dynamic_activations("float")["type"]
    ('token', 'float')
    """
    return {
        "actorder": None,
        "block_structure": None,
        "dynamic": True,
        "group_size": None,
        "num_bits": 8,
        "observer": None,
        "observer_kwargs": {},
        "scale_dtype": None,
        "strategy": "token",
        "symmetric": True,
        "type": kind,
        "zp_dtype": None,
    }


def _activation(
    module: str, activation: Activation, model_dtype: torch.dtype
) -> tuple[dict[str, Any], list[tuple[str, torch.Tensor]]]:
    """The ``input_activations`` args of a W8A8 module, and its stored input qparams (static)."""
    args = dynamic_activations("int")
    if activation == "dynamic":
        return args, []
    assert (
        isinstance(activation, QParams) and activation.scale is not None and activation.zero_point is not None
    )
    scale = activation.scale.reshape(1)
    narrow = scale.to(model_dtype)
    if model_dtype.is_floating_point and torch.equal(narrow.to(torch.float32), scale):
        scale = narrow
    zp = activation.zero_point.reshape(1)
    symmetric = not bool(zp.any())
    stored = [(f"{module}.input_scale", scale.contiguous())]
    if not symmetric:
        stored.append((f"{module}.input_zero_point", zp.to(torch.int8).contiguous()))
    args |= {
        "dynamic": False,
        "observer": "minmax",
        "strategy": "tensor",
        "symmetric": symmetric,
        "zp_dtype": None if symmetric else "torch.int8",
    }
    return args, stored


def decode(name: str, stored: dict[str, torch.Tensor], args: dict[str, Any]) -> torch.Tensor:
    """The float32 weight a compressed-tensors reader computes from the stored tensors of ``name``.

    ``(q - zero_point) * scale`` in float32, with codes and zero-points unpacked
    from their int32 words and scales expanded over their groups: the formula of
    compressed-tensors' ``dequantize`` (tests compare it with the library's own).
    """
    bits = int(args["num_bits"])
    scale = stored[f"{name}_scale"].to(torch.float32)
    zp_stored = stored.get(f"{name}_zero_point")
    if f"{name}_packed" not in stored:  # int-quantized: the codes are the weight itself
        codes = stored[name].to(torch.float32)
        zp = torch.zeros_like(scale) if zp_stored is None else zp_stored.to(torch.float32)
        return (codes - zp.reshape(scale.shape)) * scale
    rows, cols = (int(v) for v in stored[f"{name}_shape"].tolist())
    codes = unpack_int32(stored[f"{name}_packed"], bits, cols).to(torch.float32)
    if zp_stored is None:
        zp = torch.zeros_like(scale)
    elif args["strategy"] == "tensor":
        zp = zp_stored.to(torch.float32)
    else:
        zp = unpack_int32(zp_stored.t(), bits, rows).t().to(torch.float32)
    if args["strategy"] == "group":
        size = int(args["group_size"])
        scale, zp = scale.repeat_interleave(size, dim=1), zp.repeat_interleave(size, dim=1)
    return (codes - zp.reshape(scale.shape)) * scale


def _verify(name: str, qt: QuantizedTensor, decoded: torch.Tensor) -> None:
    expected = qt.dequantize(torch.float32)
    if torch.equal(decoded, expected):
        return
    differ = decoded != expected
    first = tuple(int(i) for i in torch.nonzero(differ)[0])
    raise RefusedError(
        f"{name!r}: the compressed-tensors encoding decodes to other values than scheme "
        f"{qt.qparams.scheme!r} computed ({int(differ.sum())} of {differ.numel()} differ; the first at index "
        f"{first}: the file would give {float(decoded[first]):g}, mono-quant {float(expected[first]):g}). "
        f"The format cannot hold what this scheme computed; use {option('format', 'native')}."
    )


class QuantizationConfigBuilder:
    """Collects each quantized module with its args; builds the ``quantization_config`` block.

    The block has the fields llm-compressor writes for the same scheme: one
    config group targeting ``["Linear"]`` with every ``Linear`` module that was
    not quantized (``lm_head``, excluded or skipped ones) in ``ignore``. Modules
    quantized with different args (rare) get one group each, targeting their
    exact names.
    """

    def __init__(self) -> None:
        self._groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
        #: Every ``(weight_name, args)`` in the order added (a split run's parts hand these over).
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def add(self, weight_name: str, group: dict[str, Any]) -> None:
        """Record that ``weight_name`` (``<module>.weight``) was written with ``group`` (:func:`encode`)."""
        key = json.dumps(group, sort_keys=True)
        self._groups.setdefault(key, (group, []))[1].append(weight_name.removesuffix(".weight"))
        self.entries.append((weight_name, group))

    def build(self, layout: ModelLayout) -> dict[str, Any]:
        """The ``quantization_config`` dict for ``config.json`` of a model with ``layout``."""
        quantized = {m for _, modules in self._groups.values() for m in modules}
        one = len(self._groups) == 1
        groups = {
            f"group_{i}": {
                "format": group["format"],
                "input_activations": group["input_activations"],
                "output_activations": None,
                "targets": ["Linear"] if one else sorted(modules),
                "weights": group["weights"],
            }
            for i, (group, modules) in enumerate(self._groups.values())
        }
        formats = sorted({g["format"] for g in groups.values()}) or [PACK_QUANTIZED]
        return {
            "config_groups": groups,
            "format": formats[0] if len(formats) == 1 else "mixed-precision",
            "global_compression_ratio": None,
            "ignore": sorted(m for m in layout.linear if m not in quantized),
            "kv_cache_scheme": None,
            "quant_method": "compressed-tensors",
            "quantization_status": "compressed",
            "sparsity_config": {},
            "transform_config": {},
            "version": COMPRESSED_TENSORS_VERSION,
        }
