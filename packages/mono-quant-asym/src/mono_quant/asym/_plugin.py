"""Entry point of mono-quant-asym: registers the asymmetric scheme."""

from __future__ import annotations

from mono_quant.asym._scheme import AsymmetricScheme
from mono_quant.core import Scheme, hookimpl

__all__ = ["mono_quant_schemes"]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """The ``asymmetric`` scheme."""
    return [AsymmetricScheme()]
