"""mono-quant-asym: the asymmetric (affine) scheme, with a zero-point from the range."""

from __future__ import annotations

from mono_quant.asym._scheme import AsymmetricScheme

__all__ = ["AsymmetricScheme"]
