"""Entry point of mono-quant-fp8: registers the ``fp8`` scheme (its dtypes are core's)."""

from __future__ import annotations

from mono_quant.core import Scheme, hookimpl
from mono_quant.fp8._scheme import Fp8Scheme

__all__ = ["mono_quant_schemes"]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """``fp8``: absmax-scaled FP8 E4M3/E5M2 codes, per tensor, channel or group."""
    return [Fp8Scheme()]
