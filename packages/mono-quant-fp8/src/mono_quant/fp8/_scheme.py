"""The ``fp8`` scheme: absmax scaling into FP8 E4M3/E5M2 codes (W8A16 FP8, float-quantized)."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import (
    Capabilities,
    MinMaxScheme,
    PerChannel,
    QuantDtype,
    float_code_qparams,
)

__all__ = ["FP8_DTYPES", "Fp8Scheme"]

try:
    _VERSION = md.version("mono-quant-fp8")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"

#: The FP8 code dtypes (registered by mono-quant-core) this scheme quantizes to.
FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2")


class Fp8Scheme(MinMaxScheme):
    """FP8 codes times an absmax scale, per tensor, per channel (default) or per group.

    ``scale = max(|min|, |max|) / max_value`` per granule (448 for E4M3, 57344 for
    E5M2), floored at the profile's eps, so a zero range gives a finite scale and
    exact zeros; codes are ``x / scale`` rounded to the nearest FP8 value, ties to
    even, saturating at ``±max_value`` (core's float-code rule). The default
    profile is bit-exact with torchao's ``_choose_scale_float8`` (with the eps as
    its ``hp_value_lb``) and ``_quantize_affine_float8``; the ``compressed-tensors``
    profile with compressed-tensors' ``calculate_qparams`` and ``quantize`` for
    ``QuantizationArgs(type="float", num_bits=8, symmetric=True)``.

    >>> import torch
    >>> qp = Fp8Scheme().compute_qparams(torch.tensor([[1.0, -448.0], [0.5, 0.25]]))
    >>> qp.scale.tolist(), qp.dtype
    ([1.0, 0.0011160714784637094], 'float8_e4m3fn')
    """

    name = "fp8"
    version = _VERSION
    capabilities = Capabilities(
        dtypes=FP8_DTYPES,
        granularities=("per_channel", "per_tensor", "per_group"),
        profiles=("default", "torchao", "compressed-tensors", "custom"),
        symmetric=True,
        default_dtype="float8_e4m3fn",
        default_granularity=PerChannel(0),
    )

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Absmax scale and the zero-point 0 from per-granule ``lo``/``hi`` (core's float-code rule)."""
        return float_code_qparams(lo, hi, dtype, self.profile)
