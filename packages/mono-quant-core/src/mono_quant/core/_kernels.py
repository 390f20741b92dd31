"""Row-blocked loops for the memory-bound passes: quantize, dequantize, pack.

Each loop walks a ``(rows, row_length)`` matrix in blocks of about
``BLOCK_ELEMENTS`` elements through one preallocated buffer, so every
elementwise step after the first read happens in cache and no full-size
temporary is ever allocated. The arithmetic is exactly the unblocked formula's
(the same torch ops on the same dtypes, element by element), so results are
bit-identical.
"""

from __future__ import annotations

import torch

__all__ = ["BLOCK_ELEMENTS", "dequantize_rows", "quantize_rows"]

#: About 1 MiB of float32: a block stays in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 18


def _block_rows(row_length: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, row_length))


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
) -> bool:
    """Quantize ``rows`` with per-row ``scale``/``zero_point`` (``(rows, 1)``) into ``out``.

    ``out`` has ``rows``' shape and the code dtype, or, with ``pack_offset``, half
    the row length in uint8: two 4-bit codes per byte, the first in the low
    nibble, each stored with ``+pack_offset``. Returns ``False`` if a product was
    not finite (the caller reports it), ``True`` otherwise.

    Every op has operands of one dtype: mixed-dtype ops take PyTorch's slow
    casting path. Converting first is exact (integers and narrower floats widen
    exactly; float64 rounds to float32 as the formula says).
    """
    n_rows, length = rows.shape
    step = _block_rows(length)
    buf = torch.empty((min(step, n_rows), length), dtype=compute, device=rows.device)
    inv = 1.0 / scale.to(compute)
    zp = zero_point.to(compute)
    lo, hi = bounds
    same = rows.dtype == compute
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        b = buf[: stop - start]
        if same:
            torch.mul(rows[start:stop], inv[start:stop], out=b)
        else:
            b.copy_(rows[start:stop])
            b.mul_(inv[start:stop])
        torch.round(b, out=b)
        if check_finite and not bool(torch.isfinite(b).all()):
            return False
        b.add_(zp[start:stop])
        b.clamp_(lo, hi)
        if pack_offset is None:
            out[start:stop].copy_(b)
        else:
            # (q0 + o) + 16 * (q1 + o): exact in float, then one cast to uint8.
            pair = b.view(stop - start, length // 2, 2)
            first = pair[..., 0]
            first.add_(pair[..., 1], alpha=16)
            first.add_(17 * pack_offset)
            out[start:stop].copy_(first)
    return True


def dequantize_rows(
    rows: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """``out = (rows - zero_point) * scale`` per row, in float32.

    Codes and zero-points of up to 16 bits are exact in float32, and so is their
    difference, so this equals widening to int32 before subtracting.
    """
    n_rows, length = rows.shape
    step = _block_rows(length)
    zp = zero_point.to(torch.float32)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        o = out[start:stop]
        o.copy_(rows[start:stop])
        o.sub_(zp[start:stop])
        o.mul_(scale[start:stop])
