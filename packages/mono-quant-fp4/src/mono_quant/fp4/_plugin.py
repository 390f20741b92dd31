"""Entry point of mono-quant-fp4: registers the mxfp4/nvfp4 dtypes and schemes."""

from __future__ import annotations

from mono_quant.core import QuantDtype, Scheme, hookimpl
from mono_quant.fp4._dtypes import MXFP4, NVFP4
from mono_quant.fp4._schemes import Mxfp4Scheme, Nvfp4Scheme

__all__ = ["mono_quant_dtypes", "mono_quant_schemes"]


@hookimpl
def mono_quant_dtypes() -> list[QuantDtype]:
    """``mxfp4`` and ``nvfp4``: E2M1 codes packed two per byte, with their scale storage."""
    return [MXFP4, NVFP4]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """``mxfp4`` (blocks of 32, E8M0 scales) and ``nvfp4`` (blocks of 16, E4M3 scales, FP32 tensor scale)."""
    return [Mxfp4Scheme(), Nvfp4Scheme()]
