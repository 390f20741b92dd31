"""mono-quant-int4: int4/uint4 dtypes with nibble packing, and group-wise int4 schemes."""

from __future__ import annotations

from mono_quant.int4._dtypes import INT4, INT4_PACKING, UINT4, UINT4_PACKING
from mono_quant.int4._schemes import DEFAULT_GROUP_SIZE, Int4AsymmetricScheme, Int4SymmetricScheme

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "INT4",
    "INT4_PACKING",
    "UINT4",
    "UINT4_PACKING",
    "Int4AsymmetricScheme",
    "Int4SymmetricScheme",
]
