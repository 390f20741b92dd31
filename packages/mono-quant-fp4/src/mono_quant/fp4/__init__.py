"""mono-quant-fp4: MXFP4 and NVFP4, E2M1 codes in blocks with shared scales."""

from __future__ import annotations

from mono_quant.fp4._dtypes import E2M1_PACKING, MXFP4, NVFP4
from mono_quant.fp4._schemes import MXFP4_BLOCK, NVFP4_BLOCK, Mxfp4Scheme, Nvfp4Scheme

__all__ = [
    "E2M1_PACKING",
    "MXFP4",
    "MXFP4_BLOCK",
    "NVFP4",
    "NVFP4_BLOCK",
    "Mxfp4Scheme",
    "Nvfp4Scheme",
]
