"""The affine math, written once: qparams from a range, quantize and dequantize."""

from __future__ import annotations

import math

import torch

from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import CastOverflowError, NonFiniteError, QParamsError, UnsupportedDtypeError
from mono_quant.core._granularity import PerChannel, PerGroup, PerTensor
from mono_quant.core._granules import GranuleLayout
from mono_quant.core._kernels import all_finite, dequantize_rows, error_energies_rows, quantize_rows
from mono_quant.core._packing import nibble_fast_path, packed_shape
from mono_quant.core._packing import pack as pack_codes
from mono_quant.core._packing import unpack as unpack_codes
from mono_quant.core._profile import Profile
from mono_quant.core._qparams import QParams

__all__ = [
    "affine_error_energies",
    "asymmetric_qparams",
    "check_finite",
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


def _integer_range(dtype: QuantDtype) -> tuple[int, int]:
    """``(qmin, qmax)``, or :class:`UnsupportedDtypeError` for a dtype that has none (casts, float codes)."""
    if dtype.qmin is None or dtype.qmax is None:
        raise UnsupportedDtypeError(
            f"{dtype.name!r} is not an integer dtype (kind={dtype.kind!r}): the affine formulas need its "
            f"qmin/qmax. Float codes take float_code_qparams; a float target is a cast."
        )
    return dtype.qmin, dtype.qmax


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
    qmin, qmax = _integer_range(dtype)
    lo_neg, hi_pos = _include_zero(lo, hi)
    amax = torch.max(-lo_neg, hi_pos)
    scale = amax / (float(qmax - qmin) / 2)
    if profile.rounding == "compressed-tensors":
        scale = _replace_zero_scale(scale)
    else:
        scale = torch.clamp(scale, min=profile.eps_for(lo.dtype))
    if dtype.signed:
        zp_value = 0
    elif profile.unsigned_symmetric_zero_point == "midpoint_up":
        zp_value = (qmin + qmax + 1) // 2
    else:
        zp_value = (qmin + qmax) // 2
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
    qmin, qmax = _integer_range(dtype)
    lo_neg, hi_pos = _include_zero(lo, hi)
    scale = (hi_pos - lo_neg) / float(qmax - qmin)
    if profile.rounding == "compressed-tensors":
        # compressed-tensors divides by the scale before it replaces a zero one; an all-zero
        # granule then gives 0/0 and an undefined zero-point. Any zero-point in range decodes
        # such a granule to exact zeros; this one is qmin.
        scale = _replace_zero_scale(scale)
        qmin_f, qmax_f = code_bounds(dtype, scale.dtype)
        zp = torch.round(torch.clamp(qmin - lo_neg / scale, qmin_f, qmax_f))
        return scale.to(torch.float32), zp.to(torch.int32)
    scale = torch.clamp(scale, min=profile.eps_for(lo.dtype))
    zp = qmin - torch.round(lo_neg / scale)
    qmin_f, qmax_f = code_bounds(dtype, zp.dtype)
    zp = torch.clamp(zp, qmin_f, qmax_f)
    return scale.to(torch.float32), zp.to(torch.int32)


def _replace_zero_scale(scale: torch.Tensor) -> torch.Tensor:
    """compressed-tensors' rule: a scale of exactly 0 becomes the dtype's machine epsilon."""
    eps = torch.tensor(torch.finfo(scale.dtype).eps, dtype=scale.dtype, device=scale.device)
    return torch.where(scale == 0, eps, scale)


def check_finite(x: torch.Tensor, *, name: str | None = None) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or ±inf, naming the count and first index.

    Schemes call it on their ``raise`` non-finite policy so every plugin reports
    bad input with the same message.

    >>> import torch
    >>> check_finite(torch.tensor([1.0, float("nan")]), name="w")
    Traceback (most recent call last):
    ...
    mono_quant.core.NonFiniteError: 'w' holds 1 non-finite value(s) ... at index (1,). ...
    """
    raise_nonfinite(x, name)


def cast_to_float_target(x: torch.Tensor, dtype: QuantDtype, *, name: str | None = None) -> torch.Tensor:
    """``x`` cast to a float target, refusing NaN/±inf and values the cast would overflow."""
    y = x.to(dtype.torch_dtype)
    if not all_finite(y):
        raise_nonfinite(x, name)
        bad = ~torch.isfinite(y)
        flat = int(torch.nonzero(bad.reshape(-1))[0, 0])
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), x.shape)) if x.dim() else ()
        label = f"{name!r}" if name else "the input tensor"
        raise CastOverflowError(
            f"{label} holds {int(bad.sum())} value(s) beyond {dtype.name}'s range "
            f"(±{torch.finfo(dtype.torch_dtype).max:g}); the first is {float(x.reshape(-1)[flat]):g} at "
            f"index {index}. The cast would give ±inf: use bfloat16 or an integer dtype, or rescale."
        )
    return y


def raise_nonfinite(x: torch.Tensor, name: str | None) -> None:
    """Raise :class:`NonFiniteError` with the count and first index of NaN/±inf in ``x``."""
    if all_finite(x):
        return
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
    x: torch.Tensor,
    qparams: QParams,
    dtype: QuantDtype,
    *,
    name: str | None = None,
    check_finite: bool = True,
    pack: bool = False,
    energies: list[float] | None = None,
) -> torch.Tensor:
    """``clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)`` as codes.

    Rounds half to even and before adding the zero-point (torchao's order);
    multiplies by the reciprocal. Non-finite input raises :class:`NonFiniteError`
    (``check_finite=False`` skips the check when the caller has already made it).
    With ``pack=True`` the result is the dtype's packed storage (see :func:`pack`);
    nibble layouts along the rows are packed inside the quantize loop. Where the
    loop can (float32 compute, unpacked codes of at most 16 bits, no padded
    group), it also sets
    ``energies`` to ``[signal, noise]`` (see ``quantization_error``); elsewhere
    ``energies`` is left as it was.
    """
    assert qparams.scale is not None and qparams.zero_point is not None
    layout = _layout(tuple(x.shape), qparams, "input", name)
    compute = torch.float32 if qparams.compute_dtype == "float32" else x.dtype
    rows = layout.to_rows(x)
    scale = layout.qparams_to_rows(qparams.scale.to(x.device))
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(x.device))
    if qparams.rounding == "compressed-tensors":
        if check_finite and not all_finite(rows):
            raise_nonfinite(x, name)
        codes = layout.from_rows(_quantize_compressed_tensors(rows, scale, zero_point, dtype, compute))
        return pack_codes(codes, dtype) if pack else codes
    if dtype.bits > 16:
        # float32 cannot hold int32 codes exactly: add the zero-point in int64.
        q = torch.round(rows.to(compute) * (1.0 / scale.to(compute)))
        if not all_finite(q):
            raise_nonfinite(x, name)
        assert dtype.qmin is not None and dtype.qmax is not None
        wide = torch.clamp(q.clamp(-(2.0**62), 2.0**62).to(torch.int64) + zero_point, dtype.qmin, dtype.qmax)
        codes = layout.from_rows(wide.to(dtype.torch_dtype))
        return pack_codes(codes, dtype) if pack else codes
    bounds = code_bounds(dtype, compute)
    fused_pack = pack and _nibbles_along_rows(tuple(x.shape), layout, dtype)
    if fused_pack:
        assert dtype.packing is not None
        out = torch.empty((rows.shape[0], rows.shape[1] // 2), dtype=torch.uint8, device=x.device)
    else:
        out = torch.empty(rows.shape, dtype=dtype.torch_dtype, device=x.device)
    offset = dtype.packing.offset if fused_pack and dtype.packing is not None else None
    # Padded rows repeat elements, which the energies must not count twice.
    measure = energies if compute == torch.float32 and not pack and not layout.padded else None
    if not quantize_rows(
        rows,
        scale,
        zero_point,
        bounds,
        compute,
        out,
        check_finite=check_finite,
        pack_offset=offset,
        energies=measure,
    ):
        raise_nonfinite(x, name)
        raise QParamsError(
            f"{repr(name) if name else 'the input'} times 1/scale overflows {compute}; "
            f"the qparams were not computed from this tensor."
        )
    if fused_pack:
        return out.reshape(*x.shape[:-1], x.shape[-1] // 2)
    codes = layout.from_rows(out)
    return pack_codes(codes, dtype) if pack else codes


def _quantize_compressed_tensors(
    rows: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: QuantDtype, compute: torch.dtype
) -> torch.Tensor:
    """``round(clamp(x / scale + zero_point, qmin, qmax))``, each step in ``compute`` (compressed-tensors)."""
    if compute == torch.float64:
        compute = torch.float32
    scaled = rows.to(compute) / scale.to(compute)
    scaled = scaled + zero_point.to(compute)
    qmin_f, qmax_f = code_bounds(dtype, compute)
    return torch.round(torch.clamp(scaled, qmin_f, qmax_f)).to(dtype.torch_dtype)


def _nibbles_along_rows(shape: tuple[int, ...], layout: GranuleLayout, dtype: QuantDtype) -> bool:
    """Whether codes can be packed two per byte inside the quantize loop.

    True when the dtype packs two 4-bit codes per uint8 low-first along the last
    axis, and the rows are a C-order flattening of a tensor of ``shape`` with an
    even last axis, so byte pairs never straddle a row of the original tensor.
    """
    p = dtype.packing
    if p is None or not nibble_fast_path(p):
        return False
    if not shape or p.axis not in (-1, len(shape) - 1) or shape[-1] % 2 or layout.padded:
        return False
    if (math.prod(shape) // max(1, math.prod(layout.qparam_shape))) % 2:
        return False  # odd rows (e.g. 1-D per channel): a byte would straddle two rows
    g = layout.granularity
    in_order = isinstance(g, PerTensor) or (isinstance(g, PerChannel) and g.axis == 0)
    in_order = in_order or (isinstance(g, PerGroup) and g.axis == len(shape) - 1 and g.group_size % 2 == 0)
    return in_order


def dequantize_affine(
    q: torch.Tensor,
    qparams: QParams,
    *,
    out_dtype: torch.dtype = torch.float32,
    name: str | None = None,
    out: torch.Tensor | None = None,
    packed: tuple[QuantDtype, tuple[int, ...]] | None = None,
) -> torch.Tensor:
    """``(q - zero_point) * scale`` in float32, cast to ``out_dtype``.

    With ``out`` (a tensor of ``q``'s shape and ``out_dtype``), the result is
    written there and ``out`` is returned: reusing one buffer avoids the page
    faults of a fresh allocation, which cost more than the arithmetic. With
    ``packed=(dtype, shape)``, ``q`` is ``dtype``'s packed storage of codes of
    ``shape``; nibbles packed along the rows are unpacked inside the loop.
    """
    assert qparams.scale is not None and qparams.zero_point is not None
    if packed is not None and packed[0].packing is not None:
        dtype, shape = packed
        fused = _dequantize_nibbles(q, qparams, dtype, shape, out_dtype, name, out)
        if fused is not None:
            return fused
        q = unpack_codes(q, dtype, shape)
    layout = _layout(tuple(q.shape), qparams, "codes", name)
    if out is not None and (
        tuple(out.shape) != tuple(q.shape) or out.dtype != out_dtype or out.device != q.device
    ):
        raise QParamsError(
            f"out must be a {out_dtype} tensor of shape {tuple(q.shape)} on {q.device}; got "
            f"{out.dtype} of shape {tuple(out.shape)} on {out.device}."
        )
    rows = layout.to_rows(q)
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(q.device))
    scale = layout.qparams_to_rows(qparams.scale.to(q.device))
    if q.dtype == torch.int32:  # int32 - int32 can overflow: widen to int64
        result = (rows.to(torch.int64) - zero_point.to(torch.int64)).to(torch.float32) * scale
    else:
        direct = out is not None and out_dtype == torch.float32 and out.is_contiguous() and _in_order(layout)
        target = out if direct else None
        if target is not None:
            dequantize_rows(rows, scale, zero_point, target.view(rows.shape))
            return target
        result = torch.empty(rows.shape, dtype=torch.float32, device=q.device)
        dequantize_rows(rows, scale, zero_point, result)
    full = layout.from_rows(result)
    if out is None:
        return full.to(out_dtype)
    return out.copy_(full)


def affine_error_energies(
    x: torch.Tensor, codes: torch.Tensor, qparams: QParams, *, name: str | None = None
) -> tuple[float, float] | None:
    """``(sum(x**2), sum((x - dequantize(codes))**2))`` in row blocks, or ``None``.

    ``None`` when the codes are int32 (their difference needs int64) or the
    rows are not a view of ``codes`` (the caller then dequantizes in full).
    """
    assert qparams.scale is not None and qparams.zero_point is not None
    layout = _layout(tuple(codes.shape), qparams, "codes", name)
    if codes.dtype == torch.int32 or not _in_order(layout) or not codes.is_contiguous():
        return None
    scale = layout.qparams_to_rows(qparams.scale.to(codes.device))
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(codes.device))
    return error_energies_rows(layout.to_rows(x), layout.to_rows(codes), scale, zero_point)


def _dequantize_nibbles(
    packed: torch.Tensor,
    qparams: QParams,
    dtype: QuantDtype,
    shape: tuple[int, ...],
    out_dtype: torch.dtype,
    name: str | None,
    out: torch.Tensor | None,
) -> torch.Tensor | None:
    """Unpack and dequantize in one loop, or ``None`` when the layout does not allow it."""
    assert qparams.scale is not None and qparams.zero_point is not None and dtype.packing is not None
    layout = _layout(shape, qparams, "codes", name)
    if not _nibbles_along_rows(shape, layout, dtype) or out_dtype != torch.float32:
        return None
    expected = packed_shape(shape, dtype)
    if tuple(packed.shape) != expected or packed.dtype != torch.uint8:
        return None  # unpack() raises the precise error
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=packed.device)
    elif not (
        tuple(out.shape) == shape
        and out.dtype == torch.float32
        and out.device == packed.device
        and out.is_contiguous()
    ):
        return None  # the general path writes into any out, or raises the precise error
    n_rows = math.prod(layout.qparam_shape)
    rows = packed.contiguous().view(n_rows, -1)
    scale = layout.qparams_to_rows(qparams.scale.to(packed.device))
    zero_point = layout.qparams_to_rows(qparams.zero_point.to(packed.device))
    dequantize_rows(rows, scale, zero_point, out.view(n_rows, -1), pack_offset=dtype.packing.offset)
    return out


def _in_order(layout: GranuleLayout) -> bool:
    """Whether the rows are a plain C-order reshape of the tensor (so a view of it)."""
    g = layout.granularity
    if layout.padded:
        return False
    last = len(layout.shape) - 1
    return (
        isinstance(g, PerTensor)
        or (isinstance(g, PerChannel) and g.axis == 0)
        or (isinstance(g, PerGroup) and g.axis == last)
    )
