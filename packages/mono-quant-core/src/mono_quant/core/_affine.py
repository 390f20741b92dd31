"""The affine math, written once: qparams from a range, quantize and dequantize."""

from __future__ import annotations

import torch

from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import NonFiniteError, QParamsError
from mono_quant.core._granules import GranuleLayout
from mono_quant.core._profile import Profile
from mono_quant.core._qparams import QParams

__all__ = [
    "asymmetric_qparams",
    "dequantize_affine",
    "quantize_affine",
    "raise_nonfinite",
    "symmetric_qparams",
]

_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def code_bounds(dtype: QuantDtype, compute: torch.dtype) -> tuple[float, float]:
    """``qmin``/``qmax`` as values of ``compute`` that lie inside ``[qmin, qmax]``.

    float32 cannot hold 2**31 - 1 (it rounds up to 2**31, which overflows int32 on
    the cast), so a bound that rounds outward is stepped one ulp inward.
    """
    assert dtype.qmin is not None and dtype.qmax is not None
    out: list[float] = []
    for bound in (dtype.qmin, dtype.qmax):
        t = torch.tensor(float(bound), dtype=torch.float64).to(compute)
        if compute in _INT_VIEW and abs(float(t)) > abs(bound):
            t = (t.view(_INT_VIEW[compute]) - 1).view(compute)  # one ulp toward zero
        out.append(float(t))
    return out[0], out[1]


def _include_zero(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    zeros = torch.zeros_like(lo)
    return torch.min(lo, zeros), torch.max(hi, zeros)


def symmetric_qparams(
    lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype, profile: Profile
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric scale and zero-point from per-granule ``lo``/``hi`` (computed in their dtype).

    ``scale = max(-min(lo, 0), max(hi, 0)) / ((qmax - qmin) / 2)`` floored at eps;
    the zero-point is 0 for signed dtypes and the profile's midpoint for unsigned.

    >>> import torch
    >>> from mono_quant.core import DEFAULT_PROFILE, get_dtype
    >>> lo, hi = torch.tensor([-1.0]), torch.tensor([0.5])
    >>> s, z = symmetric_qparams(lo, hi, get_dtype("int8"), DEFAULT_PROFILE)
    >>> bool(torch.isclose(s, torch.tensor([1.0 / 127.5]))), z.tolist()
    (True, [0])
    """
    assert dtype.qmin is not None and dtype.qmax is not None
    lo_neg, hi_pos = _include_zero(lo, hi)
    amax = torch.max(-lo_neg, hi_pos)
    scale = amax / (float(dtype.qmax - dtype.qmin) / 2)
    scale = torch.clamp(scale, min=profile.eps_for(lo.dtype))
    if dtype.signed:
        zp_value = 0
    elif profile.unsigned_symmetric_zero_point == "midpoint_up":
        zp_value = (dtype.qmin + dtype.qmax + 1) // 2
    else:
        zp_value = (dtype.qmin + dtype.qmax) // 2
    zero_point = torch.full(scale.shape, zp_value, dtype=torch.int32, device=scale.device)
    return scale.to(torch.float32), zero_point


def asymmetric_qparams(
    lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype, profile: Profile
) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric (affine) scale and zero-point from per-granule ``lo``/``hi``.

    ``scale = (max(hi, 0) - min(lo, 0)) / (qmax - qmin)`` floored at eps *before*
    ``zero_point = clamp(qmin - round(min(lo, 0) / scale), qmin, qmax)``.

    >>> import torch
    >>> from mono_quant.core import DEFAULT_PROFILE, get_dtype
    >>> lo, hi = torch.tensor([-1.0]), torch.tensor([3.0])
    >>> s, z = asymmetric_qparams(lo, hi, get_dtype("uint8"), DEFAULT_PROFILE)
    >>> z.tolist()
    [64]
    """
    assert dtype.qmin is not None and dtype.qmax is not None
    lo_neg, hi_pos = _include_zero(lo, hi)
    scale = (hi_pos - lo_neg) / float(dtype.qmax - dtype.qmin)
    scale = torch.clamp(scale, min=profile.eps_for(lo.dtype))
    zp = dtype.qmin - torch.round(lo_neg / scale)
    qmin_f, qmax_f = code_bounds(dtype, zp.dtype)
    zp = torch.clamp(zp, qmin_f, qmax_f)
    return scale.to(torch.float32), zp.to(torch.int32)


def raise_nonfinite(x: torch.Tensor, name: str | None) -> None:
    """Raise :class:`NonFiniteError` with the count and first index of NaN/±inf in ``x``."""
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if count == 0:
        return
    flat = int(torch.nonzero(bad.reshape(-1))[0, 0])
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), x.shape)) if x.dim() else ()
    value = float(x.reshape(-1)[flat])
    label = f"{name!r}" if name else "the input tensor"
    raise NonFiniteError(
        f"{label} holds {count} non-finite value(s) (NaN or ±inf); the first is {value} "
        f"at index {index}. Expected only finite values: clean the tensor, or leave it "
        f"out of quantization."
    )


def _layout(shape: tuple[int, ...], qparams: QParams, what: str, name: str | None) -> GranuleLayout:
    assert qparams.scale is not None
    layout = GranuleLayout.of(shape, qparams.granularity, nondivisible="pad", name=name)
    if tuple(qparams.scale.shape) != layout.qparam_shape:
        label = f"{name!r}" if name else f"the {what}"
        raise QParamsError(
            f"qparams do not fit {label}: {qparams.granularity} on shape {tuple(shape)} "
            f"needs scale/zero_point of shape {layout.qparam_shape}, got "
            f"{tuple(qparams.scale.shape)}. Compute the qparams from this tensor."
        )
    return layout


def quantize_affine(
    x: torch.Tensor, qparams: QParams, dtype: QuantDtype, *, name: str | None = None
) -> torch.Tensor:
    """``clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)`` as unpacked codes.

    Rounds half to even and before adding the zero-point (torchao's order);
    multiplies by the reciprocal. Non-finite input raises :class:`NonFiniteError`.
    """
    assert qparams.scale is not None and qparams.zero_point is not None
    layout = _layout(tuple(x.shape), qparams, "input", name)
    compute = torch.float32 if qparams.compute_dtype == "float32" else x.dtype
    rows = layout.to_rows(x).to(compute)
    scale = layout.qparams_to_rows(qparams.scale.to(device=x.device, dtype=compute))
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(x.device))
    q = torch.round(rows * (1.0 / scale))
    if not bool(torch.isfinite(q).all()):
        raise_nonfinite(x, name)
    q = q + zero_point
    qmin_f, qmax_f = code_bounds(dtype, q.dtype)
    q = torch.clamp(q, qmin_f, qmax_f).to(dtype.torch_dtype)
    return layout.from_rows(q)


def dequantize_affine(
    q: torch.Tensor,
    qparams: QParams,
    *,
    out_dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float32, cast to ``out_dtype``."""
    assert qparams.scale is not None and qparams.zero_point is not None
    layout = _layout(tuple(q.shape), qparams, "codes", name)
    wide = torch.int64 if q.dtype == torch.int32 else torch.int32
    rows = layout.to_rows(q).to(wide)
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(q.device)).to(wide)
    scale = layout.qparams_to_rows(qparams.scale.to(q.device))
    out = (rows - zero_point).to(torch.float32) * scale
    return layout.from_rows(out).to(out_dtype)
