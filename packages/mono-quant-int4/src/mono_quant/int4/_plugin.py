"""Entry point of mono-quant-int4: registers int4/uint4 and the group-wise int4 schemes."""

from __future__ import annotations

from mono_quant.core import QuantDtype, Scheme, hookimpl
from mono_quant.int4._dtypes import INT4, UINT4
from mono_quant.int4._schemes import Int4AsymmetricScheme, Int4SymmetricScheme

__all__ = ["mono_quant_dtypes", "mono_quant_schemes"]


@hookimpl
def mono_quant_dtypes() -> list[QuantDtype]:
    """``int4`` (-8..7) and ``uint4`` (0..15), packed two per byte."""
    return [INT4, UINT4]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """``int4-symmetric`` and ``int4-asymmetric`` (group-wise, group size 128)."""
    return [Int4SymmetricScheme(), Int4AsymmetricScheme()]
