"""compressed-tensors' float formats: ``float-quantized`` (FP8), ``nvfp4-`` and ``mxfp4-pack-quantized``.

Which format holds a tensor is read from its dtype's data, not from a scheme's
name: FP8 E4M3 codes (``float8_e4m3fn``, any float32 scale) go to
``float-quantized`` (the FP8 weight as ``<module>.weight``, its scale as
``weight_scale``); E2M1 codes with FP8 E4M3 block scales (``scale_dtype=
"float8_e4m3fn"``, blocks of 16) to ``nvfp4-pack-quantized`` (``weight_packed``,
``weight_scale`` in E4M3, ``weight_global_scale``); E2M1 codes with power-of-two
block scales (``scale_dtype="float8_e8m0fnu"``, blocks of 32) to
``mxfp4-pack-quantized`` (``weight_packed``, ``weight_scale`` as biased E8M0
exponents in uint8). The packed bytes are core's E2M1 packing, two codes per
byte, the first in the low nibble: compressed-tensors' own layout.

compressed-tensors' reader decodes ``float-quantized`` to ``value * scale`` in the
scale's dtype (float32 here), and both FP4 formats to bfloat16 (its
``unpack_fp4_from_uint8`` default): NVFP4 as ``value * (scale / global_scale)``,
rounded once to bfloat16; MXFP4 as ``value * 2**(e - 127)``, exact in bfloat16.
:func:`decode` recomputes that; :func:`encode` compares it, bit for bit, with
mono-quant's dequantize in the same dtype (:func:`reader_dtype`) and refuses to
write anything that would differ. Everything compressed-tensors 0.20 cannot hold
exactly is refused before: E5M2 (its float type is E4M3 only), other float
formats, NVFP4 qparams under torchao's tensor-scale convention, layouts other
than the formats' blocks along the last axis.
"""

from __future__ import annotations

from typing import Any

import torch

from mono_quant.cli._errors import RefusedError
from mono_quant.cli._options import option
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QuantDtype, Scheme, pack

__all__ = [
    "FLOAT_QUANTIZED",
    "FORMATS",
    "MXFP4_PACK_QUANTIZED",
    "NVFP4_PACK_QUANTIZED",
    "check",
    "check_scheme",
    "decode",
    "encode",
    "format_for",
    "reader_dtype",
]

FLOAT_QUANTIZED = "float-quantized"
NVFP4_PACK_QUANTIZED = "nvfp4-pack-quantized"
MXFP4_PACK_QUANTIZED = "mxfp4-pack-quantized"
FORMATS = (FLOAT_QUANTIZED, NVFP4_PACK_QUANTIZED, MXFP4_PACK_QUANTIZED)
#: The block size each FP4 format fixes, along the last (input) axis.
_BLOCK = {NVFP4_PACK_QUANTIZED: 16, MXFP4_PACK_QUANTIZED: 32}
_E2M1 = (2, 1, 6.0, False, False)
_E4M3 = (4, 3, 448.0, False, True)


def _format_of(qd: QuantDtype) -> tuple[int | None, int | None, float | None, bool, bool]:
    return (qd.exponent_bits, qd.mantissa_bits, qd.max_value, qd.has_inf, qd.has_nan)


def format_for(qd: QuantDtype) -> str | None:
    """The compressed-tensors format that holds ``qd``'s codes exactly, or ``None``.

    >>> from mono_quant.core import get_dtype
    >>> format_for(get_dtype("float8_e4m3fn"))
    'float-quantized'
    >>> format_for(get_dtype("float8_e5m2")) is None and format_for(get_dtype("int8")) is None
    True
    """
    if not qd.is_float_code:
        return None
    fmt = _format_of(qd)
    if fmt == _E4M3 and qd.scale_dtype is None and qd.code_dtype == "float8_e4m3fn":
        return FLOAT_QUANTIZED
    if fmt == _E2M1 and qd.code_dtype == "uint8" and qd.packing is not None:
        packing = (qd.packing.bits, qd.packing.per_container, qd.packing.container, qd.packing.order)
        if packing == (4, 2, "uint8", "low_first") and qd.packing.offset == 0 and qd.packing.axis in (-1, 1):
            if qd.scale_dtype == "float8_e4m3fn":
                return NVFP4_PACK_QUANTIZED
            if qd.scale_dtype == "float8_e8m0fnu":
                return MXFP4_PACK_QUANTIZED
    return None


def _why_not(qd: QuantDtype) -> str:
    if not qd.is_float_code:
        return f"dtype {qd.name!r} is not a float code dtype (kind={qd.kind!r})"
    if _format_of(qd)[:2] == (5, 2):
        return f"dtype {qd.name!r} is FP8 E5M2, and compressed-tensors' float type of 8 bits is E4M3 only"
    return (
        f"dtype {qd.name!r} (E{qd.exponent_bits}M{qd.mantissa_bits}, scales {qd.scale_dtype or 'float32'}) "
        f"is none of FP8 E4M3 with float32 scales, E2M1 with E4M3 block scales (NVFP4) or E2M1 with E8M0 "
        f"block scales (MXFP4)"
    )


def check_scheme(scheme: Scheme, qd: QuantDtype) -> str:
    """The format for ``qd``'s codes, or :class:`RefusedError` naming scheme, dtype and what can hold them.

    >>> from mono_quant.core import get_dtype, get_scheme
    >>> check_scheme(get_scheme("symmetric"), get_dtype("float8_e5m2"))
    Traceback (most recent call last):
    ...
    mono_quant.cli._errors.RefusedError: compressed-tensors' float formats ... is FP8 E5M2, ...
    """
    fmt = format_for(qd)
    if fmt is None:
        raise RefusedError(
            f"compressed-tensors' float formats ({', '.join(FORMATS)}) cannot hold scheme {scheme.name!r} "
            f"with {_why_not(qd)}. Writing it there would decode to different values. Formats that can hold "
            f"scheme {scheme.name!r} with dtype {qd.name!r}: native ({option('format', 'native')})."
        )
    return fmt


def check(name: str, shape: tuple[int, ...], qd: QuantDtype, gran: Granularity) -> str:
    """The compressed-tensors strategy for this weight, or :class:`RefusedError` saying what to change.

    >>> from mono_quant.core import get_dtype
    >>> check("fc.weight", (8, 256), get_dtype("float8_e4m3fn"), PerChannel(0))
    'channel'
    """
    fmt = format_for(qd)
    if fmt is None:
        raise RefusedError(f"{name!r}: {_why_not(qd)}; use {option('format', 'native')}.")
    if not name.endswith(".weight") or len(shape) != 2:
        what = "is not named *.weight" if not name.endswith(".weight") else f"has shape {shape}, not 2-D"
        raise RefusedError(
            f"{name!r} {what}; compressed-tensors {fmt} holds 2-D <module>.weight tensors only. "
            f"Leave it out ({option('exclude', name)}) or use {option('format', 'native')}."
        )
    cols = shape[1]
    along_rows = isinstance(gran, PerGroup) and gran.axis in (1, -1) and cols % gran.group_size == 0
    if fmt == FLOAT_QUANTIZED:
        if isinstance(gran, PerTensor):
            return "tensor"
        if isinstance(gran, PerChannel) and gran.axis in (0, -2):
            return "channel"
        if along_rows:
            return "group"
        want = "per-tensor, per-channel along axis 0, or per-group along the last axis with a size dividing"
        raise RefusedError(
            f"{name!r}: compressed-tensors {fmt} holds {want} {cols}; got {gran}. Change "
            f"{option('granularity', None)}/{option('axis', None)}/{option('group_size', None)}, or use "
            f"{option('format', 'native')}."
        )
    block = _BLOCK[fmt]
    if along_rows and isinstance(gran, PerGroup) and gran.group_size == block:
        return "tensor_group" if fmt == NVFP4_PACK_QUANTIZED else "group"
    raise RefusedError(
        f"{name!r}: compressed-tensors {fmt} holds blocks of {block} along the last axis (whose size {cols} "
        f"they must divide); got {gran}. Use {option('group_size', block)} along the last axis, or "
        f"{option('format', 'native')}."
    )


def _args(fmt: str, strategy: str, group_size: int | None) -> dict[str, Any]:
    """The weight ``QuantizationArgs`` dict, with the fields llm-compressor writes."""
    scale_dtype = {NVFP4_PACK_QUANTIZED: "torch.float8_e4m3fn", MXFP4_PACK_QUANTIZED: "torch.uint8"}.get(fmt)
    return {
        "actorder": None,
        "block_structure": None,
        "dynamic": False,
        "group_size": group_size,
        "num_bits": 8 if fmt == FLOAT_QUANTIZED else 4,
        "observer": "memoryless_minmax",
        "observer_kwargs": {},
        "scale_dtype": scale_dtype,
        "strategy": strategy,
        "symmetric": True,
        "type": "float",
        "zp_dtype": scale_dtype,
    }


def _format_of_args(args: dict[str, Any]) -> str:
    if int(args["num_bits"]) == 8:
        return FLOAT_QUANTIZED
    return NVFP4_PACK_QUANTIZED if int(args["group_size"]) == 16 else MXFP4_PACK_QUANTIZED


def reader_dtype(args: dict[str, Any]) -> torch.dtype:
    """The dtype compressed-tensors' reader gives for these args with float32 scales (see the module).

    (A float-quantized weight whose scale is stored in the model's 16-bit dtype decodes in that dtype.)

    >>> reader_dtype({"num_bits": 4, "group_size": 16}), reader_dtype({"num_bits": 8, "group_size": None})
    (torch.bfloat16, torch.float32)
    """
    return torch.float32 if _format_of_args(args) == FLOAT_QUANTIZED else torch.bfloat16


def encode(name: str, qt: QuantizedTensor) -> tuple[list[tuple[str, torch.Tensor]], dict[str, Any]]:
    """The ``<module>.weight*`` tensors for the weight ``name``, and its weight quantization args.

    The config group's ``format`` is :func:`format_for` of ``qt.quant_dtype``. The
    tensors are decoded as compressed-tensors' reader does (:func:`decode`) and must
    equal ``qt.dequantize(reader_dtype(args))`` in every bit, else :class:`RefusedError`.
    """
    qd, qp = qt.quant_dtype, qt.qparams
    strategy = check(name, qt.shape, qd, qp.granularity)
    fmt = format_for(qd)
    assert fmt is not None and qp.scale is not None
    rows, cols = qt.shape
    module = name.removesuffix(".weight")
    group = qp.granularity.group_size if isinstance(qp.granularity, PerGroup) else None
    t = qp.tensor_scale
    if fmt == FLOAT_QUANTIZED:
        if t is not None:
            raise RefusedError(f"{name!r}: FP8 qparams with a per-tensor scale level have no {fmt} form.")
        shape = {"tensor": (1,), "channel": (rows, 1), "group": (rows, cols // (group or 1))}[strategy]
        scale = qp.scale.reshape(shape)
        # In the model's dtype, as llm-compressor stores it, whenever that holds the scale exactly.
        narrow = scale.to(qt.orig_dtype)
        if qt.orig_dtype.is_floating_point and torch.equal(narrow.to(torch.float32), scale):
            scale = narrow
        out = [(name, qt.codes.contiguous()), (f"{name}_scale", scale.contiguous())]
    elif fmt == NVFP4_PACK_QUANTIZED:
        if t is None or qp.rounding != "compressed-tensors":
            raise RefusedError(
                f"{name!r}: compressed-tensors decodes NVFP4 as value * (scale / weight_global_scale); these "
                f"qparams follow torchao's value * (tensor_scale * scale), which no global scale reproduces "
                f"exactly. Quantize with {option('profile', 'compressed-tensors')}."
            )
        scale = qp.scale.reshape(rows, cols // 16)
        e4m3 = scale.to(torch.float8_e4m3fn)
        if not torch.equal(e4m3.to(torch.float32), scale):
            raise RefusedError(
                f"{name!r}: NVFP4 block scales that are not FP8 E4M3 values have no {fmt} form."
            )
        out = [
            (f"{module}.weight_packed", pack(qt.codes, qd)),
            (f"{module}.weight_scale", e4m3),
            (f"{module}.weight_global_scale", torch.tensor([t], dtype=torch.float32)),
        ]
    else:
        scale = qp.scale.reshape(rows, cols // 32)
        bits = scale.contiguous().view(torch.int32)
        exponent = torch.where(bits == 1 << 22, 0, bits >> 23)  # 2**-127 is float32's subnormal 1 << 22
        if t is not None or not torch.equal(_pow2(exponent), scale) or bool((exponent > 254).any()):
            raise RefusedError(
                f"{name!r}: MXFP4 block scales must be powers of two 2**-127..2**127 for {fmt}."
            )
        out = [
            (f"{module}.weight_packed", pack(qt.codes, qd)),
            (f"{module}.weight_scale", exponent.to(torch.uint8)),
        ]
    args = _args(fmt, strategy, group)
    decoded = decode(name, dict(out), args)
    _verify(name, qt, decoded, decoded.dtype)
    return out, args


def _pow2(biased: torch.Tensor) -> torch.Tensor:
    """``2**(biased - 127)`` in float32, exactly (biased 0 is the subnormal ``2**-127``)."""
    b = biased.to(torch.int32)
    return torch.where(b > 0, b << 23, torch.full_like(b, 1 << 22)).view(torch.float32)


#: E2M1 codes 0..15 -> their values (the sign in the top bit; 8 is -0.0).
_E2M1_VALUES = torch.tensor(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=torch.float32,
)


def decode(name: str, stored: dict[str, torch.Tensor], args: dict[str, Any]) -> torch.Tensor:
    """The weight compressed-tensors' reader computes from the stored tensors of ``name`` (see the module).

    ``float-quantized``: ``weight.to(scale.dtype) * scale``, in the stored scale's dtype
    (float32, or the model's bfloat16/float16 when it holds the scale exactly), scales
    expanded over their groups; ``nvfp4-pack-quantized``: ``(value * (scale / global_scale))`` in float32,
    rounded to bfloat16; ``mxfp4-pack-quantized``: ``value * 2**(e - 127)`` in bfloat16.
    """
    fmt = _format_of_args(args)
    module = name.removesuffix(".weight")
    if fmt == FLOAT_QUANTIZED:
        scale = stored[f"{name}_scale"]
        codes = stored[name].to(scale.dtype)
        if args["strategy"] == "group":
            scale = scale.repeat_interleave(int(args["group_size"]), dim=1)
        return codes * scale
    packed = stored[f"{module}.weight_packed"]
    rows, half = packed.shape
    nibbles = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(rows, 2 * half)
    values = _E2M1_VALUES[nibbles.to(torch.int64)]
    block = int(args["group_size"])
    if fmt == NVFP4_PACK_QUANTIZED:
        scale = stored[f"{module}.weight_scale"].to(torch.float32) / stored[f"{module}.weight_global_scale"]
        return (values * scale.repeat_interleave(block, dim=1)).to(torch.bfloat16)
    scale = _pow2(stored[f"{module}.weight_scale"])
    return (values * scale.repeat_interleave(block, dim=1)).to(torch.bfloat16)


def _verify(name: str, qt: QuantizedTensor, decoded: torch.Tensor, dtype: torch.dtype) -> None:
    expected = qt.dequantize(dtype)
    ints = torch.int32 if dtype == torch.float32 else torch.int16
    differ = decoded.contiguous().view(ints) != expected.contiguous().view(ints)
    if not bool(differ.any()):
        return
    first = tuple(int(i) for i in torch.nonzero(differ)[0])
    raise RefusedError(
        f"{name!r}: the compressed-tensors encoding decodes to other values than scheme "
        f"{qt.qparams.scheme!r} computed ({int(differ.sum())} of {differ.numel()} differ; the first at index "
        f"{first}: the file would give {float(decoded[first])!r}, mono-quant {float(expected[first])!r}, in "
        f"{str(dtype).replace('torch.', '')}). The format cannot hold what this scheme computed; use "
        f"{option('format', 'native')}."
    )
