"""Quantize and dequantize with QParams alone, whatever scheme produced them."""

from __future__ import annotations

import torch

from mono_quant.core._affine import (
    affine_error_energies,
    cast_to_float_target,
    dequantize_affine,
    quantize_affine,
)
from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import QParamsError
from mono_quant.core._floatcodes import dequantize_float_codes, quantize_float_codes
from mono_quant.core._granularity import Granularity
from mono_quant.core._kernels import block_energies
from mono_quant.core._packing import pack as pack_codes
from mono_quant.core._packing import unpack as unpack_codes
from mono_quant.core._qparams import QParams
from mono_quant.core._registry import get_dtype, get_scheme
from mono_quant.core._scheme import Scheme, check_input

__all__ = ["dequantize", "quantization_error", "quantize", "quantize_with_error"]

#: Elements per chunk when the error is summed over a full reconstruction.
_CHUNK = 1 << 18


def quantize(
    x: torch.Tensor, qparams: QParams, *, name: str | None = None, pack: bool = False
) -> torch.Tensor:
    """Codes of ``x`` under ``qparams``: unpacked, or with ``pack=True`` the packed storage.

    Affine qparams use core's affine quantize (float code dtypes such as FP8:
    core's float-code rounding); a non-affine scheme's own ``quantize`` is looked
    up by name. A float target is a plain cast.

    >>> import torch
    >>> from mono_quant.core import QParams
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(1, dtype=torch.int32), dtype="int8")
    >>> quantize(torch.tensor([0.0, 1.0, -0.75]), qp).tolist()  # -1.5 rounds half to even
    [1, 3, -1]
    """
    x = check_input(x, name=name).detach()
    qd = get_dtype(qparams.dtype)
    if qparams.is_float:
        return cast_to_float_target(x, qd, name=name)
    if qparams.affine and qd.is_float_code:
        return quantize_float_codes(x, qparams, qd, name=name, pack=pack)
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
    shape: tuple[int, ...] | torch.Size | None = None,
) -> torch.Tensor:
    """Floats back from codes: ``(q - zero_point) * scale`` (affine), ``value(q) * scale`` (float codes).

    ``out`` (the codes' shape, ``dtype``) receives the result and is returned; reusing
    one buffer across calls avoids the cost of allocating a fresh output.
    ``shape`` says ``q`` is the packed storage (what ``quantize(..., pack=True)``
    returns) of codes of that shape: the result has ``shape``, and 4-bit codes
    packed along the rows are unpacked inside the dequantize loop, without a
    full-size codes tensor.

    >>> import torch
    >>> from mono_quant.core import QParams
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(1, dtype=torch.int32), dtype="int8")
    >>> dequantize(torch.tensor([1, 3, 0], dtype=torch.int8), qp).tolist()
    [0.0, 1.0, -0.5]
    """
    q = q.detach()
    if not qparams.is_float and qparams.affine and get_dtype(qparams.dtype).is_float_code:
        qd = get_dtype(qparams.dtype)
        if shape is not None and qd.packing is None and tuple(q.shape) != tuple(shape):
            label = f"{name!r}" if name else "the codes"
            raise QParamsError(
                f"{label} have shape {tuple(q.shape)}, but shape={tuple(shape)} was given and "
                f"{qd.name!r} is not packed: pass the codes of that shape."
            )
        packed = tuple(int(s) for s in shape) if shape is not None else None
        return dequantize_float_codes(q, qparams, qd, out_dtype=dtype, name=name, out=out, shape=packed)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        qd = get_dtype(qparams.dtype)
        if qd.packing is None:
            if tuple(q.shape) != shape:
                label = f"{name!r}" if name else "the codes"
                raise QParamsError(
                    f"{label} have shape {tuple(q.shape)}, but shape={shape} was given and "
                    f"{qd.name!r} is not packed: pass the codes of that shape."
                )
        elif not qparams.affine:
            q = unpack_codes(q, qd, shape)
        else:
            return dequantize_affine(q, qparams, out_dtype=dtype, name=name, out=out, packed=(qd, shape))
    if qparams.is_float:
        return q.to(dtype) if out is None else out.copy_(q)
    if qparams.affine:
        return dequantize_affine(q, qparams, out_dtype=dtype, name=name, out=out)
    result = get_scheme(qparams.scheme).dequantize(q, qparams, dtype=dtype, name=name)
    return result if out is None else out.copy_(result)


def quantization_error(
    x: torch.Tensor, codes: torch.Tensor, qparams: QParams, *, name: str | None = None
) -> tuple[float, float]:
    """Signal and noise energies of a quantization: ``(sum(x**2), sum((x - x_hat)**2))``.

    ``x_hat`` is ``dequantize(codes, qparams)`` in float32 and ``x`` is taken in
    float32; the sums are float32 dot products over blocks, accumulated in
    float64. Affine codes are dequantized block by block, so no full-size
    reconstruction is allocated. ``10 * log10(signal / noise)`` is the SQNR in dB.
    A shape mismatch between ``x`` and ``codes`` raises :class:`QParamsError`.

    >>> import torch
    >>> from mono_quant.core import QParams
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(0, dtype=torch.int32), dtype="int8")
    >>> x = torch.tensor([1.0, 0.2])
    >>> signal, noise = quantization_error(x, quantize(x, qp), qp)
    >>> round(signal, 6), round(noise, 6)  # 0.2 quantizes to 0.0
    (1.04, 0.04)
    """
    return _error_energies(x, codes, qparams, None, name)


def _error_energies(
    x: torch.Tensor, codes: torch.Tensor, qparams: QParams, scheme: Scheme | None, name: str | None
) -> tuple[float, float]:
    """:func:`quantization_error`, dequantizing non-affine codes with ``scheme`` (else by name)."""
    x = check_input(x, name=name).detach()
    if tuple(codes.shape) != tuple(x.shape):
        label = f"{name!r}" if name else "the input tensor"
        raise QParamsError(
            f"codes must have the shape of {label} (unpacked): expected {tuple(x.shape)}, "
            f"got {tuple(codes.shape)}. Unpack packed codes first."
        )
    if qparams.affine and not qparams.is_float and not get_dtype(qparams.dtype).is_float_code:
        energies = affine_error_energies(x, codes, qparams, name=name)
        if energies is not None:
            return energies
    if scheme is not None and not qparams.affine and not qparams.is_float:
        x_hat = scheme.dequantize(codes, qparams, dtype=torch.float32, name=name).reshape(-1)
    else:
        x_hat = dequantize(codes, qparams, dtype=torch.float32, name=name).reshape(-1)
    flat = x.reshape(-1)
    signal = 0.0
    noise = 0.0
    for start in range(0, flat.numel(), _CHUNK):
        a = flat[start : start + _CHUNK].to(torch.float32)
        # A copy: a scheme's dequantize may hand back memory that is not ours to overwrite.
        block_signal, block_noise = block_energies(a, x_hat[start : start + _CHUNK].clone())
        signal += block_signal
        noise += block_noise
    return signal, noise


def quantize_with_error(
    scheme: Scheme,
    x: torch.Tensor,
    dtype: str | QuantDtype | None = None,
    granularity: Granularity | None = None,
    *,
    name: str | None = None,
) -> tuple[torch.Tensor, QParams, tuple[float, float]]:
    """Codes, qparams and the error in one call: ``(codes, qparams, (signal, noise))``.

    The codes and qparams are ``scheme.quantize_tensor(x, dtype, granularity)``'s
    (unpacked): a scheme that overrides :meth:`~mono_quant.core.Scheme.quantize_tensor`
    gets its override called here, and so by ``mono-quant quantize``. The
    energies are :func:`quantization_error`'s, non-affine codes dequantized by
    ``scheme`` itself. With core's own ``quantize_tensor`` and affine integer
    codes of up to 16 bits computed in float32, the energies are summed inside
    the quantize loop, while each block is still in cache, so the input is not
    read a second time; the codes are the same bits either way.

    >>> import torch
    >>> from mono_quant.core import MinMaxScheme, PerChannel, asymmetric_qparams
    >>> class Asym(MinMaxScheme):
    ...     name, version = "asym-demo", "1"
    ...     def qparams_from_range(self, lo, hi, dtype):
    ...         return asymmetric_qparams(lo, hi, dtype, self.profile)
    >>> x = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]])
    >>> codes, qp, (signal, noise) = quantize_with_error(Asym(), x, "uint8", PerChannel(0))
    >>> codes.dtype, round(signal, 4), noise < 1e-4
    (torch.uint8, 15.25, True)
    """
    x = check_input(x, name=name).detach()
    if type(scheme).quantize_tensor is Scheme.quantize_tensor:
        energies: list[float] = []
        codes, qp = scheme._quantize_tensor_default(
            x, dtype, granularity, name=name, pack=False, energies=energies
        )
        if energies:
            return codes, qp, (energies[0], energies[1])
    else:
        codes, qp = scheme.quantize_tensor(x, dtype, granularity, name=name)
    return codes, qp, _error_energies(x, codes, qp, scheme, name)
