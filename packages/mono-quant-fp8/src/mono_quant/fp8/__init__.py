"""mono-quant-fp8: scale-only FP8 (E4M3, E5M2) weight quantization."""

from __future__ import annotations

from mono_quant.fp8._scheme import FP8_DTYPES, Fp8Scheme

__all__ = ["FP8_DTYPES", "Fp8Scheme"]
