"""Row-blocked loops for the memory-bound passes: quantize, dequantize, pack.

Each loop walks a ``(rows, row_length)`` matrix in blocks of about
``BLOCK_ELEMENTS`` elements through one preallocated buffer, so every
elementwise step after the first read happens in cache and no full-size
temporary is ever allocated. The arithmetic is exactly the unblocked formula's
(the same torch ops on the same dtypes, element by element), so results are
bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mono_quant.core._parallel import current_block_threads, run_blocks

__all__ = [
    "BLOCK_ELEMENTS",
    "all_finite",
    "block_energies",
    "dequantize_rows",
    "error_energies_rows",
    "minmax_rows",
    "pack_nibbles",
    "quantize_rows",
    "unpack_nibbles",
]

#: About 1 MiB of float32: a block stays in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 18


def _block_rows(row_length: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, row_length))


#: Row length a single long row (per-tensor qparams) is cut into: see _one_row_as_many.
_SPLIT_ROW = 4096


def _one_row_as_many(
    rows: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, other: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One long row (per-tensor qparams) as ``(n, 4096)`` rows sharing its scale and zero-point.

    Otherwise a single row is a single block: one thread, and a buffer as large as
    the tensor. Elementwise results are the same; ``other`` (the codes or the
    output, possibly half as long when packed) is viewed alike.
    """
    n_rows, length = rows.shape
    if (
        n_rows != 1
        or length < 2 * BLOCK_ELEMENTS
        or length % _SPLIT_ROW
        or not rows.is_contiguous()
        or not other.is_contiguous()
    ):
        return rows, scale, zero_point, other
    n = length // _SPLIT_ROW
    return (
        rows.view(n, _SPLIT_ROW),
        scale.reshape(1, 1).expand(n, 1),
        zero_point.reshape(1, 1).expand(n, 1),
        other.view(n, -1),
    )


def all_finite(x: torch.Tensor) -> bool:
    """Whether every element of floating ``x`` is finite, usually in one cheap pass.

    NaN and ±inf propagate through a sum, so a finite sum proves every element
    finite; ``isfinite`` (several times slower: it writes a bool per element)
    decides only when the sum is not finite, which finite values can also cause
    by overflowing.
    """
    if current_block_threads() > 1 and x.numel() > 2 * BLOCK_ELEMENTS and x.is_contiguous():
        flat = x.reshape(-1)
        step = BLOCK_ELEMENTS

        def worker() -> Callable[[int], bool]:
            def work(i: int) -> bool:
                block = flat[i * step : (i + 1) * step]
                return math.isfinite(float(block.sum())) or bool(torch.isfinite(block).all())

            return work

        return all(run_blocks(-(-flat.numel() // step), worker))
    if math.isfinite(float(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def minmax_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum of ``rows``, in its dtype.

    ``amin`` then ``amax``: torch.aminmax(dim=...) is several times slower than
    both together on CPU (torch 2.13). Half-precision rows are widened to float32
    block by block first (exact, and order-preserving, so the min and max are
    the same values): CPU reductions over bfloat16/float16 are slow kernels.
    """
    half = rows.dtype in (torch.bfloat16, torch.float16)
    n_rows, length = rows.shape
    if not half and (current_block_threads() <= 1 or n_rows == 1):
        return torch.amin(rows, dim=1), torch.amax(rows, dim=1)
    step = _block_rows(length)
    wide = torch.float32 if half else rows.dtype
    lo = torch.empty(n_rows, dtype=wide, device=rows.device)
    hi = torch.empty(n_rows, dtype=wide, device=rows.device)

    def worker() -> Callable[[int], None]:
        size = (min(step, n_rows), length)
        buf = torch.empty(size, dtype=torch.float32, device=rows.device) if half else None

        def work(i: int) -> None:
            start, stop = i * step, min((i + 1) * step, n_rows)
            b = rows[start:stop] if buf is None else buf[: stop - start].copy_(rows[start:stop])
            torch.amin(b, dim=1, out=lo[start:stop])
            torch.amax(b, dim=1, out=hi[start:stop])

        return work

    run_blocks(-(-n_rows // step), worker)
    return lo.to(rows.dtype), hi.to(rows.dtype)


def quantize_rows(
    rows: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    bounds: tuple[float, float],
    compute: torch.dtype,
    out: torch.Tensor,
    *,
    check_finite: bool = True,
    pack_offset: int | None = None,
    energies: list[float] | None = None,
) -> bool:
    """Quantize ``rows`` with per-row ``scale``/``zero_point`` (``(rows, 1)``) into ``out``.

    ``out`` has ``rows``' shape and the code dtype, or, with ``pack_offset``, half
    the row length in uint8: two 4-bit codes per byte, the first in the low
    nibble, each stored with ``+pack_offset``. Returns ``False`` if a product was
    not finite (the caller reports it), ``True`` otherwise. With ``energies``
    (float32 compute, unpacked), it is set to :func:`error_energies_rows`' result,
    computed on each block while it is in cache.

    Every op has operands of one dtype: mixed-dtype ops take PyTorch's slow
    casting path. Converting first is exact (integers and narrower floats widen
    exactly; float64 rounds to float32 as the formula says).
    """
    rows, scale, zero_point, out = _one_row_as_many(rows, scale, zero_point, out)
    n_rows, length = rows.shape
    step = _block_rows(length)
    size = (min(step, n_rows), length)
    inv = 1.0 / scale.to(compute)
    lo, hi = bounds
    packing = pack_offset is not None
    if pack_offset is not None:
        # Store code + offset (0..15): fold the offset into the zero-point and bounds.
        zero_point = zero_point + pack_offset
        lo, hi = lo + pack_offset, hi + pack_offset
    zp = zero_point.to(compute)
    add_zero_point = bool(zp.any())  # symmetric signed: all zero, skip the add
    same = rows.dtype == compute
    measure = energies is not None
    if measure:
        assert compute == torch.float32 and not packing
        same = same and rows.is_contiguous()  # the block is read again as one flat vector

    def worker() -> Callable[[int], tuple[bool, float, float]]:
        device = rows.device
        buf = torch.empty(size, dtype=compute, device=device)
        wide = torch.empty(size, dtype=compute, device=device) if measure and not same else None
        nibbles = torch.empty(size, dtype=torch.uint8, device=device) if packing else None
        pairs = torch.empty((size[0], length // 2), dtype=torch.int16, device=device) if packing else None

        def work(i: int) -> tuple[bool, float, float]:
            start, stop = i * step, min((i + 1) * step, n_rows)
            b = buf[: stop - start]
            if same:
                a = rows[start:stop]
                torch.mul(a, inv[start:stop], out=b)
            elif wide is not None:
                a = wide[: stop - start]
                a.copy_(rows[start:stop])
                torch.mul(a, inv[start:stop], out=b)
            else:
                b.copy_(rows[start:stop])
                b.mul_(inv[start:stop])
            torch.round(b, out=b)
            if check_finite and not all_finite(b):
                return False, 0.0, 0.0
            if add_zero_point:
                b.add_(zp[start:stop])
            b.clamp_(lo, hi)
            if nibbles is None or pairs is None:
                out[start:stop].copy_(b)
            else:
                n = nibbles[: stop - start]
                n.copy_(b)
                pack_nibbles(n, pairs[: stop - start], out[start:stop])
            if not measure:
                return True, 0.0, 0.0
            # b holds the codes: dequantize in place, as dequantize_rows does
            if add_zero_point:
                b.sub_(zp[start:stop])
            b.mul_(scale[start:stop])
            return (True, *block_energies(a, b))

        return work

    results = run_blocks(-(-n_rows // step), worker)
    if not all(ok for ok, _, _ in results):
        return False
    if energies is not None:
        signal = noise = 0.0
        for _, block_signal, block_noise in results:  # block order: the same sums for any thread count
            signal += block_signal
            noise += block_noise
        energies[:] = [signal, noise]
    return True


def pack_nibbles(nibbles: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor) -> None:
    """Pack contiguous uint8 values 0..15 two per byte, the first in the low nibble.

    Each pair of bytes read as one little-endian int16 is ``w = c0 + 256 * c1``;
    ``w | (w >> 4)`` has ``c0 + 16 * c1`` in its low byte, which the cast to uint8
    keeps. Every step reads and writes contiguous memory (no strided pass): all
    three tensors are contiguous, ``scratch`` is int16 with ``out``'s element count.
    """
    w = nibbles.reshape(-1).view(torch.int16)
    flat = scratch.view(-1)
    torch.bitwise_right_shift(w, 4, out=flat)
    flat.bitwise_or_(w)
    out.view(-1).copy_(flat)


def unpack_nibbles(packed: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor) -> None:
    """Inverse of :func:`pack_nibbles`: ``out`` (8-bit, twice ``packed``'s last axis) gets 0..15.

    ``p = 16 * c1 + c0`` widened to int16: ``(p | (p << 4)) & 0x0F0F`` has ``c0``
    in its low byte and ``c1`` in its high byte, which are ``out``'s two bytes.
    Every tensor is contiguous; ``scratch`` is int16 with ``packed``'s element count.
    """
    flat = scratch.view(-1)
    flat.copy_(packed.reshape(-1))
    wide = out.view(-1).view(torch.int16)
    torch.bitwise_left_shift(flat, 4, out=wide)
    wide.bitwise_or_(flat)
    wide.bitwise_and_(0x0F0F)


def dequantize_rows(
    rows: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    out: torch.Tensor,
    *,
    pack_offset: int | None = None,
) -> None:
    """``out = (rows - zero_point) * scale`` per row, in float32.

    Codes and zero-points of up to 16 bits are exact in float32, and so is their
    difference, so this equals widening to int32 before subtracting. With
    ``pack_offset``, ``rows`` is contiguous uint8 holding two codes per byte
    (:func:`pack_nibbles`, each stored ``+pack_offset``), unpacked block by block.
    """
    rows, scale, zero_point, out = _one_row_as_many(rows, scale, zero_point, out)
    n_rows, length = out.shape
    step = _block_rows(length)
    if pack_offset is not None:
        zero_point = zero_point + pack_offset
    zp = zero_point.to(torch.float32)

    def worker() -> Callable[[int], None]:
        size = (min(step, n_rows), length)
        packed = pack_offset is not None
        nibbles = torch.empty(size, dtype=torch.uint8, device=out.device) if packed else None
        half_size = (size[0], length // 2)
        scratch = torch.empty(half_size, dtype=torch.int16, device=out.device) if packed else None

        def work(i: int) -> None:
            start, stop = i * step, min((i + 1) * step, n_rows)
            o = out[start:stop]
            src = rows[start:stop]
            if nibbles is not None and scratch is not None:
                src = nibbles[: stop - start]
                unpack_nibbles(rows[start:stop], scratch[: stop - start], src)
            o.copy_(src)
            o.sub_(zp[start:stop])
            o.mul_(scale[start:stop])

        return work

    run_blocks(-(-n_rows // step), worker)


def error_energies_rows(
    rows: torch.Tensor,
    codes: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
) -> tuple[float, float]:
    """``(sum(x**2), sum((x - x_hat)**2))`` of ``rows`` against the dequantized ``codes``.

    ``x_hat`` is :func:`dequantize_rows`'s float32 result and ``x`` is taken in
    float32, block by block: no full-size temporary. Each block's sums are float32
    dot products, accumulated across blocks in float64.
    """
    rows, scale, zero_point, codes = _one_row_as_many(rows, scale, zero_point, codes)
    n_rows, length = rows.shape
    step = _block_rows(length)
    size = (min(step, n_rows), length)
    direct = rows.dtype == torch.float32 and rows.is_contiguous()
    zp = zero_point.to(torch.float32)

    def worker() -> Callable[[int], tuple[float, float]]:
        hat = torch.empty(size, dtype=torch.float32, device=rows.device)
        wide = None if direct else torch.empty(size, dtype=torch.float32, device=rows.device)

        def work(i: int) -> tuple[float, float]:
            start, stop = i * step, min((i + 1) * step, n_rows)
            h = hat[: stop - start]
            h.copy_(codes[start:stop])
            h.sub_(zp[start:stop])
            h.mul_(scale[start:stop])
            a = rows[start:stop] if wide is None else wide[: stop - start].copy_(rows[start:stop])
            return block_energies(a, h)

        return work

    signal = 0.0
    noise = 0.0
    for block_signal, block_noise in run_blocks(-(-n_rows // step), worker):
        signal += block_signal
        noise += block_noise
    return signal, noise


def block_energies(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[float, float]:
    """``(sum(x**2), sum((x - x_hat)**2))`` of two contiguous float32 blocks, as float32 dots.

    ``x_hat`` is overwritten with the difference (it is the caller's scratch).
    """
    flat = x.reshape(-1)
    x_hat.sub_(x)
    d = x_hat.reshape(-1)
    return float(torch.dot(flat, flat)), float(torch.dot(d, d))
