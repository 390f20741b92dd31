"""mono-quant-sym: the symmetric scheme (zero-point 0, or the midpoint for unsigned dtypes)."""

from __future__ import annotations

from mono_quant.sym._scheme import SymmetricScheme

__all__ = ["SymmetricScheme"]
