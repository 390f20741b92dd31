"""Sub-byte packing driven by the registry's :class:`Packing` data (integer codes and float bit patterns)."""

from __future__ import annotations

import sys

import torch

from mono_quant.core._dtypes import Packing, QuantDtype
from mono_quant.core._errors import MonoQuantError
from mono_quant.core._granularity import normalize_axis
from mono_quant.core._kernels import pack_nibbles, unpack_nibbles

__all__ = ["nibble_fast_path", "pack", "packed_shape", "unpack"]

_CONTAINER = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}
_WIDTH = {"uint8": 8, "int16": 16, "int32": 32}


def nibble_fast_path(p: Packing) -> bool:
    """Whether ``p`` is two 4-bit codes per uint8, low nibble first, on a little-endian host.

    Those layouts pack and unpack with int16 arithmetic on contiguous memory
    (:func:`~mono_quant.core._kernels.pack_nibbles`).
    """
    return (p.bits, p.per_container, p.container, p.order) == (4, 2, "uint8", "low_first") and (
        sys.byteorder == "little"
    )


def packed_shape(shape: tuple[int, ...], dtype: QuantDtype) -> tuple[int, ...]:
    """The shape of the packed storage for codes of ``shape`` (unchanged if unpacked).

    >>> from mono_quant.core import Packing, QuantDtype
    >>> d = QuantDtype("u4", 4, False, 0, 15, "uint8", packing=Packing(4, 2))
    >>> packed_shape((3, 5), d)
    (3, 3)
    """
    p = dtype.packing
    if p is None:
        return tuple(shape)
    axis = normalize_axis(p.axis, len(shape), what="packing axis")
    n = shape[axis]
    return shape[:axis] + (-(-n // p.per_container),) + shape[axis + 1 :]


def pack(codes: torch.Tensor, dtype: QuantDtype) -> torch.Tensor:
    """Pack unpacked ``codes`` of ``dtype`` into its storage container.

    Odd lengths along the packing axis are padded with stored zeros; keep the
    original shape to :func:`unpack`. A dtype without packing is returned as is.

    >>> import torch
    >>> from mono_quant.core import Packing, QuantDtype
    >>> d = QuantDtype("i4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
    >>> pack(torch.tensor([-8, 7, 1], dtype=torch.int8), d).tolist()
    [240, 9]
    """
    p = dtype.packing
    if p is None:
        return codes
    if codes.dim() == 0:
        raise MonoQuantError(f"cannot pack a 0-d tensor of {dtype.name!r} codes; reshape it to 1-d.")
    last = p.axis in (-1, codes.dim() - 1)
    if last and nibble_fast_path(p) and codes.shape[-1] % 2 == 0:
        stored = (codes + p.offset).contiguous()
        stored = stored.view(torch.uint8) if stored.dtype == torch.int8 else stored.to(torch.uint8)
        out = torch.empty(*codes.shape[:-1], codes.shape[-1] // 2, dtype=torch.uint8, device=codes.device)
        pack_nibbles(stored, torch.empty(out.shape, dtype=torch.int16, device=codes.device), out)
        return out
    if last and (p.bits, p.per_container, p.container) == (4, 2, "uint8") and codes.shape[-1] % 2 == 0:
        # Byte arithmetic on half-size views (<< wraps in two's complement).
        pair = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
        first, second = pair[..., 0] + p.offset, pair[..., 1] + p.offset
        if p.order == "high_first":
            first, second = second, first
        packed = first | (second << 4)
        return packed.view(torch.uint8) if packed.dtype == torch.int8 else packed.to(torch.uint8)
    t = codes.movedim(p.axis, -1).to(torch.int64) + p.offset
    n = t.shape[-1]
    pad = (-n) % p.per_container
    if pad:
        t = torch.cat([t, t.new_zeros(*t.shape[:-1], pad)], dim=-1)
    t = t.reshape(*t.shape[:-1], -1, p.per_container)
    mask = (1 << p.bits) - 1
    packed = torch.zeros(t.shape[:-1], dtype=torch.int64, device=codes.device)
    for i in range(p.per_container):
        slot = i if p.order == "low_first" else p.per_container - 1 - i
        packed |= (t[..., i] & mask) << (p.bits * slot)
    width = _WIDTH[p.container]
    if p.container != "uint8":  # two's complement wrap for signed containers
        packed = torch.where(packed >= 2 ** (width - 1), packed - 2**width, packed)
    return packed.to(_CONTAINER[p.container]).movedim(-1, p.axis).contiguous()


def unpack(packed: torch.Tensor, dtype: QuantDtype, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack`: the codes of the original ``shape``.

    >>> import torch
    >>> from mono_quant.core import Packing, QuantDtype
    >>> d = QuantDtype("i4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
    >>> unpack(torch.tensor([240, 9], dtype=torch.uint8), d, (3,)).tolist()
    [-8, 7, 1]
    """
    p = dtype.packing
    shape = tuple(int(s) for s in shape)
    if p is None:
        return packed
    expected = packed_shape(shape, dtype)
    if tuple(packed.shape) != expected or packed.dtype != _CONTAINER[p.container]:
        raise MonoQuantError(
            f"packed {dtype.name!r} codes for shape {shape} must be {p.container} of shape "
            f"{expected}; got {packed.dtype} of shape {tuple(packed.shape)}."
        )
    last = p.axis in (-1, len(shape) - 1)
    if last and nibble_fast_path(p) and dtype.torch_dtype in (torch.int8, torch.uint8):
        n = shape[-1]
        codes = torch.empty(*shape[:-1], packed.shape[-1] * 2, dtype=dtype.torch_dtype, device=packed.device)
        unpack_nibbles(packed, torch.empty(packed.shape, dtype=torch.int16, device=packed.device), codes)
        if p.offset:
            codes.sub_(p.offset)
        return codes[..., :n].contiguous() if n % 2 else codes
    if last and (p.bits, p.per_container, p.container) == (4, 2, "uint8"):
        # Two byte ops into strided halves of the output, no int64.
        n = shape[-1]
        codes = torch.empty(*shape[:-1], packed.shape[-1] * 2, dtype=dtype.torch_dtype, device=packed.device)
        first, second = (codes[..., 0::2], codes[..., 1::2])
        if p.order == "high_first":
            first, second = second, first
        first.copy_(packed & 0x0F)
        second.copy_(packed >> 4)
        if p.offset:
            codes.sub_(p.offset)
        return codes[..., :n].contiguous() if n % 2 else codes
    width = _WIDTH[p.container]
    t = packed.movedim(p.axis, -1).to(torch.int64) & ((1 << width) - 1)
    mask = (1 << p.bits) - 1
    parts = []
    for i in range(p.per_container):
        slot = i if p.order == "low_first" else p.per_container - 1 - i
        parts.append((t >> (p.bits * slot)) & mask)
    codes = torch.stack(parts, dim=-1).reshape(*t.shape[:-1], -1)
    axis = normalize_axis(p.axis, len(shape), what="packing axis")
    codes = codes[..., : shape[axis]] - p.offset
    return codes.to(dtype.torch_dtype).movedim(-1, p.axis).contiguous()
