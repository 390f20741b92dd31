"""One tensor: its codes and qparams together, how it is quantized, and how much error that made."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mono_quant.core import (
    Granularity,
    NonFiniteError,
    QParams,
    QuantDtype,
    Scheme,
    check_finite,
    dequantize,
    pack,
    packed_shape,
    quantize_with_error,
)

__all__ = ["QuantizedTensor", "quantize_tensor", "sqnr_db"]


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """Codes (unpacked, the original shape), their QParams, the quant dtype and the original dtype.

    >>> import torch
    >>> from mono_quant.core import QParams, get_dtype
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(0, dtype=torch.int32), dtype="int8")
    >>> qt = QuantizedTensor(torch.tensor([2, -4], dtype=torch.int8), qp, get_dtype("int8"), torch.float32)
    >>> qt.dequantize().tolist()
    [1.0, -2.0]
    """

    codes: torch.Tensor
    qparams: QParams
    quant_dtype: QuantDtype
    orig_dtype: torch.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the original tensor (and of the unpacked codes)."""
        return tuple(self.codes.shape)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Floats back with core's :func:`~mono_quant.core.dequantize`, in ``dtype`` (default: original)."""
        return dequantize(self.codes, self.qparams, dtype=dtype or self.orig_dtype)

    def stored_qparams(self) -> dict[str, torch.Tensor]:
        """The qparams tensors a checkpoint stores: float codes' zero-point (always 0) is not stored."""
        tensors = self.qparams.tensors()
        if self.quant_dtype.is_float_code:
            tensors.pop("zero_point", None)
        return tensors

    def stored(self) -> torch.Tensor:
        """The codes as stored: packed with the dtype's :class:`~mono_quant.core.Packing`, if it has one."""
        if self.quant_dtype.packing is None:
            return self.codes
        return pack(self.codes, self.quant_dtype)

    @property
    def nbytes(self) -> int:
        """True storage bytes: stored codes plus scale plus zero-point."""
        p = self.quant_dtype.packing
        if p is None:
            codes = self.codes.numel() * self.codes.element_size()
        else:
            n = math.prod(packed_shape(self.shape, self.quant_dtype))
            codes = n * torch.empty((), dtype=_CONTAINERS[p.container]).element_size()
        return codes + sum(t.numel() * t.element_size() for t in self.stored_qparams().values())

    def equals(self, other: QuantizedTensor) -> bool:
        """Bit-identical codes, identical QParams and dtypes."""
        return (
            self.orig_dtype == other.orig_dtype
            and self.quant_dtype == other.quant_dtype
            and self.codes.dtype == other.codes.dtype
            and self.codes.shape == other.codes.shape
            and torch.equal(self.codes, other.codes)
            and self.qparams.equals(other.qparams)
        )


_CONTAINERS = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}


def quantize_tensor(
    x: torch.Tensor, scheme: Scheme, dtype: QuantDtype, granularity: Granularity, *, name: str
) -> tuple[QuantizedTensor, float, float]:
    """Quantize ``x``; return it with the signal and noise energies (sums of squares).

    The energies compare ``x`` with its float32 reconstruction
    (:func:`~mono_quant.core.quantize_with_error`: summed inside the quantize
    loop, no full-size reconstruction); :func:`sqnr_db` turns them into decibels.
    Non-finite energies (a scheme that let NaN/inf through) raise :class:`~mono_quant.core.NonFiniteError`.
    """
    codes, qp, (signal, noise) = quantize_with_error(scheme, x, dtype, granularity, name=name)
    qt = QuantizedTensor(codes, qp, dtype, x.dtype)
    if not (math.isfinite(signal) and math.isfinite(noise)) or signal < _TINY_ENERGY:
        # float32 sums of squares overflow past ~1e19 and underflow below ~1e-19: sum in float64.
        check_finite(x, name=name)
        signal, noise = _energies_float64(x, qt)
        if not (math.isfinite(signal) and math.isfinite(noise)):
            raise NonFiniteError(
                f"{name!r}: the quantization error is not finite even in float64; the values are too large."
            )
    return qt, signal, noise


#: Below this signal energy float32 sums of squares lose their precision (squares go subnormal).
_TINY_ENERGY = 1e-20


def _energies_float64(x: torch.Tensor, qt: QuantizedTensor) -> tuple[float, float]:
    """Signal and noise energies summed in float64 from the float32 reconstruction (a rare, exact path)."""
    xd = x.to(torch.float64).reshape(-1)
    diff = qt.dequantize(torch.float32).to(torch.float64).reshape(-1).sub_(xd)
    return float(torch.dot(xd, xd)), float(torch.dot(diff, diff))


def sqnr_db(signal: float, noise: float) -> float:
    """Signal-to-quantization-noise ratio in dB; ``inf`` when the reconstruction is exact.

    >>> sqnr_db(100.0, 1.0)
    20.0
    >>> sqnr_db(1.0, 0.0)
    inf
    """
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
