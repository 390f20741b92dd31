"""The native format: safetensors holding codes, scale and zero-point per tensor, described in metadata.

Per quantized tensor ``NAME``: ``NAME::codes`` (packed when the dtype has a
Packing), ``NAME::scale`` and ``NAME::zero_point`` (none for a float16/bfloat16
cast), and the metadata key ``mono_quant.tensor:NAME`` holding JSON with the
original shape and dtype, the quant dtype entry (packing included) and
``QParams.metadata()``. Tensors that were not quantized keep their name and
have no metadata key. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from mono_quant.cli._errors import InputError, UsageError
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import QParams, QuantDtype, unpack

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KEY_FORMAT",
    "KEY_PRODUCER",
    "KEY_VERSION",
    "SEP",
    "TENSOR_PREFIX",
    "check_name",
    "decode",
    "dtype_name",
    "encode",
    "file_metadata",
    "parse_dtype",
    "read_header",
]

FORMAT = "native"
FORMAT_VERSION = 1
SEP = "::"
KEY_FORMAT = "mono_quant.format"
KEY_VERSION = "mono_quant.format_version"
KEY_PRODUCER = "mono_quant.producer"
TENSOR_PREFIX = "mono_quant.tensor:"


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``.

    >>> dtype_name(torch.bfloat16)
    'bfloat16'
    """
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    """Inverse of :func:`dtype_name`.

    >>> parse_dtype("float16")
    torch.float16
    """
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown torch dtype {name!r} in checkpoint metadata.")
    return value


def check_name(name: str) -> None:
    """Refuse an input tensor name that would collide with the native format's own names."""
    if SEP in name:
        raise UsageError(
            f"tensor name {name!r} contains {SEP!r}, which the native format reserves for "
            f"'<name>{SEP}codes'/'{SEP}scale'; rename the tensor or use --format compressed-tensors."
        )


def file_metadata(producer: dict[str, str]) -> dict[str, str]:
    """The file-level metadata of a native checkpoint."""
    return {
        "format": "pt",
        KEY_FORMAT: FORMAT,
        KEY_VERSION: str(FORMAT_VERSION),
        KEY_PRODUCER: json.dumps(producer, sort_keys=True),
    }


def encode(name: str, qt: QuantizedTensor) -> tuple[list[tuple[str, torch.Tensor]], tuple[str, str]]:
    """The tensors to store for ``qt`` and its metadata entry ``(key, json)``.

    >>> from mono_quant.core import get_scheme, PerChannel, get_dtype
    >>> from mono_quant.cli._tensor import quantize_tensor
    >>> sym, int8 = get_scheme("symmetric"), get_dtype("int8")
    >>> qt, _, _ = quantize_tensor(torch.randn(4, 6), sym, int8, PerChannel(0), name="w")
    >>> [n for n, _ in encode("w", qt)[0]]
    ['w::codes', 'w::scale', 'w::zero_point']
    """
    check_name(name)
    tensors = [(f"{name}{SEP}codes", qt.stored())]
    tensors += [(f"{name}{SEP}{k}", v) for k, v in qt.stored_qparams().items()]
    entry = {
        "shape": list(qt.shape),
        "orig_dtype": dtype_name(qt.orig_dtype),
        "quant_dtype": qt.quant_dtype.to_dict(),
        "qparams": qt.qparams.metadata(),
    }
    return tensors, (TENSOR_PREFIX + name, json.dumps(entry, sort_keys=True))


def read_header(metadata: dict[str, str], where: str) -> dict[str, dict[str, Any]] | None:
    """The quantized-tensor entries of a file's metadata; ``None`` if it is not a native file.

    A file written by a newer format version is refused, not misread.
    """
    if metadata.get(KEY_FORMAT) != FORMAT:
        return None
    version = metadata.get(KEY_VERSION, "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise InputError(
            f"{where} is a mono-quant native checkpoint of format version {version or '?'}, newer than "
            f"this mono-quant reads ({FORMAT_VERSION}); upgrade mono-quant to read it."
        )
    entries: dict[str, dict[str, Any]] = {}
    for key, value in metadata.items():
        if key.startswith(TENSOR_PREFIX):
            try:
                entries[key[len(TENSOR_PREFIX) :]] = json.loads(value)
            except ValueError as exc:
                raise InputError(
                    f"{where}: metadata {key!r} is not valid JSON ({exc}); the file is damaged."
                ) from exc
    return entries


def _quant_dtype(data: dict[str, Any], where: str) -> QuantDtype:
    try:
        return QuantDtype.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: the quant dtype entry {data!r} cannot be read ({exc}).") from exc


def decode(
    name: str, entry: dict[str, Any], get: Callable[[str], torch.Tensor], *, where: str
) -> QuantizedTensor:
    """Rebuild the :class:`QuantizedTensor` of ``name`` from its entry and stored tensors.

    The dtype entry stored in the file (packing included) is used, so unpacking
    does not depend on which plugins are installed.
    """
    try:
        shape = tuple(int(s) for s in entry["shape"])
        orig = parse_dtype(str(entry["orig_dtype"]))
        qd = _quant_dtype(entry["quant_dtype"], where)
        meta = {str(k): str(v) for k, v in dict(entry["qparams"]).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{where}: the metadata of {name!r} is incomplete ({exc!r}); the file is damaged."
        ) from exc
    stored = _get(get, f"{name}{SEP}codes", where)
    codes = unpack(stored, qd, shape) if qd.packing is not None else stored
    if tuple(codes.shape) != shape or codes.dtype != qd.torch_dtype:
        raise InputError(
            f"{where}: {name!r} codes are {codes.dtype} {tuple(codes.shape)}, the metadata says "
            f"{qd.torch_dtype} {shape}; the file is damaged."
        )
    tensors = {}
    if not qd.is_float:
        tensors["scale"] = _get(get, f"{name}{SEP}scale", where)
        if qd.is_float_code:  # not stored: a float code's zero-point is 0 (files before 0.1 may hold it)
            try:
                tensors["zero_point"] = get(f"{name}{SEP}zero_point")
            except KeyError:
                tensors["zero_point"] = torch.zeros(tensors["scale"].shape, dtype=torch.int32)
        else:
            tensors["zero_point"] = _get(get, f"{name}{SEP}zero_point", where)
    return QuantizedTensor(codes, QParams.from_tensors(tensors, meta), qd, orig)


def _get(get: Callable[[str], torch.Tensor], key: str, where: str) -> torch.Tensor:
    try:
        return get(key)
    except KeyError:
        raise InputError(
            f"{where}: the tensor {key!r} named in the metadata is missing; the file is damaged."
        ) from None
