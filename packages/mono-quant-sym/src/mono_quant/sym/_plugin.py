"""Entry point of mono-quant-sym: registers the symmetric scheme."""

from __future__ import annotations

from mono_quant.core import Scheme, hookimpl
from mono_quant.sym._scheme import SymmetricScheme

__all__ = ["mono_quant_schemes"]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """The ``symmetric`` scheme."""
    return [SymmetricScheme()]
