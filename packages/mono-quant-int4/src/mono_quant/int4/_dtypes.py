"""The int4 and uint4 registry entries, with their nibble packing as data."""

from __future__ import annotations

from mono_quant.core import Packing, QuantDtype

__all__ = ["INT4", "INT4_PACKING", "UINT4", "UINT4_PACKING"]

#: Two codes per uint8 along the last axis, the first in the low nibble, stored
#: with +8 so -8..7 becomes 0..15. Viewed as little-endian int32 this is
#: compressed-tensors' pack-quantized layout (8 codes per int32, first lowest).
INT4_PACKING = Packing(bits=4, per_container=2, container="uint8", axis=-1, order="low_first", offset=8)
UINT4_PACKING = Packing(bits=4, per_container=2, container="uint8", axis=-1, order="low_first", offset=0)

INT4 = QuantDtype(
    "int4", 4, True, -8, 7, "int8", packing=INT4_PACKING, description="signed 4-bit, packed two per byte"
)
UINT4 = QuantDtype(
    "uint4",
    4,
    False,
    0,
    15,
    "uint8",
    packing=UINT4_PACKING,
    description="unsigned 4-bit, packed two per byte",
)
