"""Scaled float codes (FP8, E2M1, any small float format), written once: round, decode, quantize.

A ``float_code`` :class:`~mono_quant.core.QuantDtype` is a sign-exponent-mantissa
format described as data. Quantizing divides by the scale, saturates at the
format's ``±max_value`` and rounds to the nearest representable value, ties to
even; dequantizing is ``value(q) * scale``. torch's own float8 casts do the
rounding for float8 containers (they round to nearest even and saturate);
smaller formats are held as bit patterns in ``uint8`` and rounded here with the
same rule, checked against torch's casts and torchao's bit-level conversion.

A two-level format (NVFP4) adds one float32 per-tensor scale, carried in
``QParams.extra`` (see :attr:`~mono_quant.core.QParams.tensor_scale`), combined
with the block scales by the profile's convention:

- ``rounding="torchao"`` (torchao's ``nvfp4_quantize``; NVIDIA's ``weight_scale_2``):
  ``q = round(x * ((1 / t) / s))``, ``value = v * (t * s)``;
- ``rounding="compressed-tensors"`` (its ``weight_global_scale``):
  ``q = round(x / (s / t))``, ``value = v * (s / t)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import QParamsError
from mono_quant.core._granules import GranuleLayout
from mono_quant.core._kernels import BLOCK_ELEMENTS, all_finite
from mono_quant.core._packing import pack as pack_codes
from mono_quant.core._packing import unpack as unpack_codes
from mono_quant.core._parallel import run_blocks
from mono_quant.core._profile import Profile
from mono_quant.core._qparams import QParams

__all__ = [
    "decode_float_codes",
    "dequantize_float_codes",
    "encode_float_codes",
    "float_code_qparams",
    "float_code_values",
    "quantize_float_codes",
]


def _fmt(dtype: QuantDtype) -> tuple[int, int, int]:
    """``(exponent bits, mantissa bits, bias)`` of a float code dtype."""
    if not dtype.is_float_code or dtype.exponent_bits is None or dtype.mantissa_bits is None:
        raise QParamsError(f"{dtype.name!r} is not a float code dtype (kind={dtype.kind!r}).")
    e, m = dtype.exponent_bits, dtype.mantissa_bits
    return e, m, 2 ** (e - 1) - 1


@functools.lru_cache(maxsize=64)
def _tables(dtype: QuantDtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(magnitudes, midpoints, decode table)`` of a float code dtype, float32 on the CPU.

    ``magnitudes[i]`` is the value of magnitude code ``i`` (every finite non-negative
    code, in code order: for these formats code order is value order). The decode
    table maps every ``2**bits`` code, sign bit included, to its value (NaN, ±inf
    where the format has them).
    """
    e, m, bias = _fmt(dtype)
    n_mag = 2 ** (e + m)
    values = []
    for code in range(n_mag):
        exp_field, mant = code >> m, code & ((1 << m) - 1)
        if exp_field == 0:
            v = mant * 2.0 ** (1 - bias - m)
        else:
            v = (2**m + mant) * 2.0 ** (exp_field - bias - m)
        values.append(v)
    top = 2**e - 1
    finite = []
    special: dict[int, float] = {}
    for code, v in enumerate(values):
        if dtype.has_inf and (code >> m) == top:
            special[code] = math.inf if (code & ((1 << m) - 1)) == 0 else math.nan
        elif dtype.has_nan and not dtype.has_inf and code == n_mag - 1:
            special[code] = math.nan
        else:
            finite.append(v)
    mags = torch.tensor(finite, dtype=torch.float64)
    assert float(mags[-1]) == dtype.max_value, (dtype.name, float(mags[-1]))
    mids = (mags[:-1] + mags[1:]) / 2
    table = [special.get(c, values[c]) for c in range(n_mag)]
    if dtype.signed:
        table += [-v for v in table]
    return mags.to(torch.float32), mids.to(torch.float32), torch.tensor(table, dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _cast_saturates(torch_dtype: torch.dtype) -> bool:
    """Whether torch's cast to this float8 dtype saturates out-of-range values (E4M3FN from torch 2.12).

    Then the clamp before it changes nothing and is skipped; older torch gives NaN there.
    """
    limit = torch.finfo(torch_dtype).max
    probe = torch.tensor([limit * 1.5, -limit * 1.5, math.inf, -math.inf]).to(torch_dtype).to(torch.float32)
    return probe.tolist() == [limit, -limit, limit, -limit]


def float_code_values(dtype: QuantDtype) -> torch.Tensor:
    """Every finite non-negative value of a float code dtype, ascending (float32).

    >>> from mono_quant.core import QuantDtype
    >>> e2m1 = QuantDtype("e2m1", 4, True, None, None, "uint8", kind="float_code",
    ...                   exponent_bits=2, mantissa_bits=1, max_value=6.0)
    >>> float_code_values(e2m1).tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    """
    return _tables(dtype)[0].clone()


def encode_float_codes(y: torch.Tensor, dtype: QuantDtype, *, negative_zero: bool = True) -> torch.Tensor:
    """Codes of ``y`` (finite, already scaled): nearest value, ties to even, saturating at ``±max_value``.

    Float8 containers use torch's cast (the same rule); bit-pattern formats return
    ``uint8`` codes, sign in the top bit. ``negative_zero=False`` gives ``-0.0`` the
    code of ``+0.0``, as compressed-tensors does (it adds its zero-point, 0.0, before
    rounding); a negative value that rounds to zero keeps its sign either way.

    >>> import torch
    >>> from mono_quant.core import get_dtype
    >>> encode_float_codes(torch.tensor([1.0625, 500.0]), get_dtype("float8_e4m3fn")).tolist()
    [1.0, 448.0]
    """
    _fmt(dtype)
    limit = float(dtype.max_value)  # type: ignore[arg-type]
    y32 = y.to(torch.float32).clamp(-limit, limit)
    if not negative_zero:
        y32 = y32 + 0.0  # -0.0 + 0.0 is +0.0; every other value is unchanged
    if dtype.code_dtype != "uint8":
        return y32.to(dtype.torch_dtype)
    mids = _tables(dtype)[1]
    mids = mids.to(y32.device)
    a = y32.abs()
    idx = torch.bucketize(a, mids)
    tie = a == mids[idx.clamp(max=mids.numel() - 1)]
    idx += (tie & (idx % 2 == 1)).to(idx.dtype)  # a tie goes to the even code
    codes = idx.to(torch.uint8)
    if dtype.signed:
        codes |= torch.signbit(y32).to(torch.uint8) << (dtype.bits - 1)
    return codes


def decode_float_codes(codes: torch.Tensor, dtype: QuantDtype) -> torch.Tensor:
    """The float32 value of each code (a float8 tensor, or bit patterns in ``uint8``).

    >>> import torch
    >>> from mono_quant.core import get_dtype
    >>> decode_float_codes(torch.tensor([1.5, -448.0]).to(torch.float8_e4m3fn), get_dtype("float8_e4m3fn"))
    tensor([   1.5000, -448.0000])
    """
    if codes.dtype != dtype.torch_dtype:
        raise QParamsError(f"{dtype.name!r} codes are {dtype.torch_dtype}, got {codes.dtype}.")
    if dtype.code_dtype != "uint8":
        return codes.to(torch.float32)
    table = _tables(dtype)[2].to(codes.device)
    return table[codes.to(torch.int64) & (table.numel() - 1)]


def float_code_qparams(
    lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype, profile: Profile
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax scale (and the zero-point 0) of float codes from per-granule ``lo``/``hi``.

    ``scale = max(-min(lo, 0), max(hi, 0)) / max_value`` in ``lo``'s dtype, floored at
    the profile's eps (``rounding="compressed-tensors"``: only a scale of exactly 0
    is replaced, by the compute dtype's machine epsilon). torchao's
    ``_choose_scale_float8`` and compressed-tensors' ``calculate_qparams`` for
    ``type="float"`` compute the same quotient.

    >>> import torch
    >>> from mono_quant.core import DEFAULT_PROFILE, get_dtype
    >>> s, z = float_code_qparams(torch.tensor([-896.0]), torch.tensor([1.0]),
    ...                           get_dtype("float8_e4m3fn"), DEFAULT_PROFILE)
    >>> s.tolist(), z.tolist()
    ([2.0], [0])
    """
    _fmt(dtype)
    zeros = torch.zeros_like(lo)
    amax = torch.max(-torch.min(lo, zeros), torch.max(hi, zeros))
    scale = amax / float(dtype.max_value)  # type: ignore[arg-type]
    if profile.rounding == "compressed-tensors":
        eps = torch.tensor(torch.finfo(scale.dtype).eps, dtype=scale.dtype, device=scale.device)
        scale = torch.where(scale == 0, eps, scale)
    else:
        scale = torch.clamp(scale, min=profile.eps_for(lo.dtype))
    zero_point = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
    return scale.to(torch.float32), zero_point


def _layout(shape: tuple[int, ...], qparams: QParams, name: str | None) -> GranuleLayout:
    assert qparams.scale is not None
    layout = GranuleLayout.of(shape, qparams.granularity, nondivisible="pad", name=name)
    if tuple(qparams.scale.shape) != layout.qparam_shape:
        label = f"{name!r}" if name else "the tensor"
        raise QParamsError(
            f"qparams do not fit {label}: {qparams.granularity} on shape {tuple(shape)} "
            f"needs scale of shape {layout.qparam_shape}, got {tuple(qparams.scale.shape)}. "
            f"Compute the qparams from this tensor."
        )
    return layout


def _divisor_and_multiplier(qparams: QParams, scale: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """What quantize applies to each row: ``(d, True)`` divides by ``d``, ``(d, False)`` multiplies."""
    t = qparams.tensor_scale
    if t is None:
        return scale, True
    tensor = torch.tensor(t, dtype=torch.float32, device=scale.device)
    if qparams.rounding == "compressed-tensors":
        return scale / tensor, True
    return (1.0 / tensor) / scale, False


def effective_scale(qparams: QParams) -> torch.Tensor:
    """The float32 factor ``dequantize`` multiplies each code's value by (qparams-shaped)."""
    assert qparams.scale is not None
    t = qparams.tensor_scale
    if t is None:
        return qparams.scale
    tensor = torch.tensor(t, dtype=torch.float32, device=qparams.scale.device)
    if qparams.rounding == "compressed-tensors":
        return qparams.scale / tensor
    return tensor * qparams.scale


def quantize_float_codes(
    x: torch.Tensor,
    qparams: QParams,
    dtype: QuantDtype,
    *,
    name: str | None = None,
    check_finite: bool = True,
    pack: bool = False,
) -> torch.Tensor:
    """Float codes of ``x``: ``round(clamp(x / scale, ±max_value))``, ties to even (see the module).

    The division runs in float32, or in the input's dtype under the
    compressed-tensors profile's ``compute_dtype="input"`` (as compressed-tensors
    divides there); a two-level format always runs in float32. Non-finite input
    raises :class:`NonFiniteError` unless the caller has checked it
    (``check_finite=False``). ``pack=True`` returns the dtype's packed storage.
    """
    from mono_quant.core._affine import raise_nonfinite

    assert qparams.scale is not None
    layout = _layout(tuple(x.shape), qparams, name)
    if check_finite and not all_finite(x):
        raise_nonfinite(x, name)
    ct = qparams.rounding == "compressed-tensors"
    compute = torch.float32
    if ct and qparams.compute_dtype == "input" and qparams.tensor_scale is None and x.dtype != torch.float64:
        compute = x.dtype
    rows = layout.to_rows(x)
    factor, divide = _divisor_and_multiplier(qparams, layout.qparams_to_rows(qparams.scale.to(x.device)))
    factor = factor.to(compute)
    if not bool(torch.isfinite(factor).all()) or not bool((factor > 0).all()):
        label = f"{name!r}" if name else "the input"
        raise QParamsError(
            f"the scales of {label} combine to a factor that is not finite and > 0 in {compute} "
            f"(scale {qparams.scale.min().item():g}..{qparams.scale.max().item():g}, tensor scale "
            f"{qparams.tensor_scale!r}); these qparams cannot quantize."
        )
    limit = float(dtype.max_value)  # type: ignore[arg-type]
    n_rows, length = rows.shape
    step = max(1, BLOCK_ELEMENTS // max(1, length))
    out = torch.empty(rows.shape, dtype=dtype.torch_dtype, device=x.device)
    sub_byte = dtype.code_dtype == "uint8"
    clamp = sub_byte or not _cast_saturates(dtype.torch_dtype)
    op = torch.div if divide else torch.mul

    def worker() -> Callable[[int], None]:
        buf = torch.empty((min(step, n_rows), length), dtype=compute, device=x.device)

        def work(i: int) -> None:
            start, stop = i * step, min((i + 1) * step, n_rows)
            b = buf[: stop - start]
            if rows.dtype == compute:
                op(rows[start:stop], factor[start:stop], out=b)  # one pass, in cache from here on
            else:
                # exact: a narrower float widens, float64 rounds as the formula says
                b.copy_(rows[start:stop])
                op(b, factor[start:stop], out=b)
            if clamp:
                b.clamp_(-limit, limit)
            if ct:
                b.add_(0.0)  # compressed-tensors adds its zero-point, 0.0: an exact -0.0 becomes +0.0
            if sub_byte:
                out[start:stop] = encode_float_codes(b, dtype)
            else:
                out[start:stop].copy_(b if compute == torch.float32 else b.to(torch.float32))

        return work

    run_blocks(-(-n_rows // step), worker)
    codes = layout.from_rows(out)
    return pack_codes(codes, dtype) if pack else codes


def dequantize_float_codes(
    q: torch.Tensor,
    qparams: QParams,
    dtype: QuantDtype,
    *,
    out_dtype: torch.dtype = torch.float32,
    name: str | None = None,
    out: torch.Tensor | None = None,
    shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """``value(q) * scale`` in float32 (two-level: the profile's rule), cast to ``out_dtype``.

    ``shape`` says ``q`` is the packed storage of codes of that shape.
    """
    if shape is not None and dtype.packing is not None:
        q = unpack_codes(q, dtype, shape)
    layout = _layout(tuple(q.shape), qparams, name)
    if out is not None and (tuple(out.shape) != tuple(q.shape) or out.dtype != out_dtype):
        raise QParamsError(
            f"out must be a {out_dtype} tensor of shape {tuple(q.shape)}; got {out.dtype} of shape "
            f"{tuple(out.shape)}."
        )
    values = layout.to_rows(decode_float_codes(q, dtype))
    values = values * layout.qparams_to_rows(effective_scale(qparams).to(q.device))
    full = layout.from_rows(values)
    if out is None:
        return full.to(out_dtype)
    return out.copy_(full)
