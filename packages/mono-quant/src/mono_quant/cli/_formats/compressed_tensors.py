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
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import torch

from mono_quant.cli._errors import UsageError
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import Granularity, Packing, PerChannel, PerGroup, PerTensor, QuantDtype, pack

__all__ = ["BITS", "FORMAT", "QuantizationConfigBuilder", "check", "encode", "pack_int32"]

FORMAT = "compressed-tensors"
PACK_QUANTIZED = "pack-quantized"
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


def _signed(t: torch.Tensor, qd: QuantDtype) -> torch.Tensor:
    if qd.signed:
        return t.to(torch.int8)
    return (t.to(torch.int16) - (1 << (qd.bits - 1))).to(torch.int8)


def check(name: str, shape: tuple[int, ...], qd: QuantDtype, gran: Granularity) -> str:
    """The compressed-tensors strategy for this weight, or :class:`UsageError` saying what to change.

    >>> from mono_quant.core import get_dtype
    >>> check("fc.weight", (8, 256), get_dtype("int4"), PerGroup(-1, 128))
    'group'
    """
    if not name.endswith(".weight") or len(shape) != 2:
        what = "is not named *.weight" if not name.endswith(".weight") else f"has shape {shape}, not 2-D"
        raise UsageError(
            f"{name!r} {what}; compressed-tensors pack-quantized holds 2-D <module>.weight tensors only. "
            f"Leave it out (--exclude '{name}') or use --format native."
        )
    if qd.is_float or qd.bits not in BITS:
        raise UsageError(
            f"{name!r}: dtype {qd.name!r} does not fit compressed-tensors pack-quantized, written here for "
            f"{', '.join(map(str, BITS))}-bit integers. Use int4/int8 (or uint4/uint8), or --format native."
        )
    cols = shape[1]
    if isinstance(gran, PerGroup) and gran.axis in (1, -1) and cols % gran.group_size == 0:
        return "group"
    if isinstance(gran, PerChannel) and gran.axis in (0, -2):
        return "channel"
    if isinstance(gran, PerTensor):
        return "tensor"
    raise UsageError(
        f"{name!r}: compressed-tensors holds per-group along the last axis with a group size that divides "
        f"{cols}, per-channel along axis 0, or per-tensor; got {gran}. Change --granularity/--axis/"
        f"--group-size, or use --format native."
    )


def encode(
    name: str, qt: QuantizedTensor, *, symmetric: bool
) -> tuple[list[tuple[str, torch.Tensor]], dict[str, Any]]:
    """The ``<module>.weight_*`` tensors for the weight ``name``, and its quantization args.

    ``symmetric`` (the scheme's claim) drops the zero-point when it is all zero
    after the shift to the signed range; otherwise it is stored.
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
    out = [
        (f"{name}_packed", pack_int32(_signed(qt.codes, qd), qd.bits)),
        (f"{name}_scale", scale.contiguous()),
        (f"{name}_shape", torch.tensor([rows, cols], dtype=torch.int64)),
    ]
    if keep_zp:
        stored_zp = zp if strategy == "tensor" else pack_int32(zp.t().contiguous(), qd.bits).t().contiguous()
        out.append((f"{name}_zero_point", stored_zp))
    args = {
        "num_bits": qd.bits,
        "type": "int",
        "symmetric": not keep_zp,
        "strategy": strategy,
        "group_size": group_size,
        "dynamic": False,
        "observer": "minmax",
    }
    return out, args


class QuantizationConfigBuilder:
    """Collects each quantized module with its args; builds the ``quantization_config`` block.

    Modules with identical args share a config group whose ``targets`` are their
    exact names, so nothing unquantized is ever targeted.
    """

    def __init__(self) -> None:
        self._groups: dict[str, tuple[dict[str, Any], list[str]]] = {}

    def add(self, weight_name: str, args: dict[str, Any]) -> None:
        """Record that ``weight_name`` (``<module>.weight``) was quantized with ``args``."""
        key = json.dumps(args, sort_keys=True)
        self._groups.setdefault(key, (args, []))[1].append(weight_name.removesuffix(".weight"))

    def extend(self, other: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Add several ``(weight_name, args)`` pairs."""
        for name, args in other:
            self.add(name, args)

    def build(self) -> dict[str, Any]:
        """The ``quantization_config`` dict for ``config.json``."""
        groups = {
            f"group_{i}": {
                "targets": sorted(modules),
                "weights": args,
                "input_activations": None,
                "output_activations": None,
                "format": PACK_QUANTIZED,
            }
            for i, (args, modules) in enumerate(self._groups.values())
        }
        return {
            "quant_method": "compressed-tensors",
            "format": PACK_QUANTIZED,
            "quantization_status": "compressed",
            "config_groups": groups,
            "ignore": [],
            "kv_cache_scheme": None,
            "sparsity_config": {},
            "transform_config": {},
        }
