"""Quantize and dequantize with QParams alone, whatever scheme produced them."""

from __future__ import annotations

import torch

from mono_quant.core._affine import cast_to_float_target, dequantize_affine, quantize_affine
from mono_quant.core._packing import pack as pack_codes
from mono_quant.core._qparams import QParams
from mono_quant.core._registry import get_dtype, get_scheme
from mono_quant.core._scheme import check_input

__all__ = ["dequantize", "quantize"]


def quantize(
    x: torch.Tensor, qparams: QParams, *, name: str | None = None, pack: bool = False
) -> torch.Tensor:
    """Codes of ``x`` under ``qparams``: unpacked, or with ``pack=True`` the packed storage.

    Affine qparams use core's affine quantize; a non-affine scheme's own
    ``quantize`` is looked up by name. A float target is a plain cast.

    >>> import torch
    >>> from mono_quant.core import QParams
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(1, dtype=torch.int32), dtype="int8")
    >>> quantize(torch.tensor([0.0, 1.0, -0.75]), qp).tolist()  # -1.5 rounds half to even
    [1, 3, -1]
    """
    check_input(x, name=name)
    qd = get_dtype(qparams.dtype)
    if qparams.is_float:
        return cast_to_float_target(x, qd, name=name)
    if qparams.affine:
        return quantize_affine(x, qparams, qd, name=name, pack=pack)
    codes = get_scheme(qparams.scheme).quantize(x, qparams, name=name)
    return pack_codes(codes, qd) if pack else codes


def dequantize(
    q: torch.Tensor,
    qparams: QParams,
    *,
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Floats back from codes: ``(q - zero_point) * scale`` for affine qparams.

    ``out`` (``q``'s shape, ``dtype``) receives the result and is returned; reusing
    one buffer across calls avoids the cost of allocating a fresh output.

    >>> import torch
    >>> from mono_quant.core import QParams
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(1, dtype=torch.int32), dtype="int8")
    >>> dequantize(torch.tensor([1, 3, 0], dtype=torch.int8), qp).tolist()
    [0.0, 1.0, -0.5]
    """
    if qparams.is_float:
        return q.to(dtype) if out is None else out.copy_(q)
    if qparams.affine:
        return dequantize_affine(q, qparams, out_dtype=dtype, name=name, out=out)
    result = get_scheme(qparams.scheme).dequantize(q, qparams, dtype=dtype, name=name)
    return result if out is None else out.copy_(result)
