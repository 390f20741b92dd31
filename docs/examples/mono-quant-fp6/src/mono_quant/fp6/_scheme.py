"""The ``fp6_e3m2`` dtype and the ``fp6`` scheme: a float format is data, a scheme only picks scales."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import Capabilities, MinMaxScheme, PerGroup, QuantDtype, float_code_qparams

__all__ = ["DEFAULT_GROUP_SIZE", "FP6_E3M2", "Fp6Scheme"]

try:
    _VERSION = md.version("mono-quant-fp6")
except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0+unknown"

#: FP6 E3M2 as data: sign, 3 exponent bits (bias 3), 2 mantissa bits, every code a
#: number (no inf, no NaN), so the largest value is 1.75 * 2**4 = 28. Codes are the
#: 6-bit patterns, held one per byte (``uint8``), the sign in bit 5. Core rounds to
#: and decodes from this format using these fields alone, and refuses an entry whose
#: max_value does not follow from them.
FP6_E3M2 = QuantDtype(
    "fp6_e3m2",
    bits=6,
    signed=True,
    qmin=None,
    qmax=None,
    code_dtype="uint8",
    kind="float_code",
    description="FP6 E3M2 codes times a scale (max 28, no inf or NaN)",
    exponent_bits=3,
    mantissa_bits=2,
    max_value=28.0,
)

#: The block size of the OCP Microscaling formats.
DEFAULT_GROUP_SIZE = 32


class Fp6Scheme(MinMaxScheme):
    """FP6 E3M2 codes times ``amax / 28`` per group of 32 along the last axis (any granularity works).

    ``compute_qparams`` gives the scale (float32) and a zero-point of 0; core's
    ``quantize`` rounds ``x / scale`` to the nearest FP6 value, ties to even,
    saturating at ±28, and ``dequantize`` is ``value(code) * scale``.

    >>> import torch
    >>> qp = Fp6Scheme().compute_qparams(torch.full((1, 32), 56.0))
    >>> qp.scale.tolist(), qp.dtype
    ([[2.0]], 'fp6_e3m2')
    """

    name = "fp6"
    version = _VERSION
    capabilities = Capabilities(
        dtypes=("fp6_e3m2",),
        granularities=("per_group", "per_channel", "per_tensor"),
        profiles=("default", "torchao", "compressed-tensors", "custom"),
        symmetric=True,
        default_dtype="fp6_e3m2",
        default_granularity=PerGroup(axis=-1, group_size=DEFAULT_GROUP_SIZE),
    )

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``max(|lo|, |hi|) / 28`` per group, floored at the profile's eps; the zero-point 0."""
        return float_code_qparams(lo, hi, dtype, self.profile)
