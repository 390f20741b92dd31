"""Core's own registry entries, delivered through the same hooks as any plugin."""

from __future__ import annotations

from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._hookspecs import hookimpl

__all__ = ["BUILTIN_DTYPES", "mono_quant_dtypes", "mono_quant_schemes"]

BUILTIN_DTYPES: tuple[QuantDtype, ...] = (
    QuantDtype("int8", 8, True, -128, 127, "int8", description="signed 8-bit"),
    QuantDtype("uint8", 8, False, 0, 255, "uint8", description="unsigned 8-bit"),
    QuantDtype("int16", 16, True, -(2**15), 2**15 - 1, "int16", description="signed 16-bit"),
    QuantDtype("int32", 32, True, -(2**31), 2**31 - 1, "int32", description="signed 32-bit"),
    QuantDtype(
        "float16", 16, True, None, None, "float16", kind="float", description="IEEE half: a plain cast"
    ),
    QuantDtype(
        "bfloat16", 16, True, None, None, "bfloat16", kind="float", description="bfloat16: a plain cast"
    ),
)


@hookimpl
def mono_quant_dtypes() -> tuple[QuantDtype, ...]:
    """Core's built-in dtypes: int8, uint8, int16, int32 and the float16/bfloat16 casts."""
    return BUILTIN_DTYPES


@hookimpl
def mono_quant_schemes() -> tuple[()]:
    """Core ships no scheme: schemes come from plugins such as mono-quant-asym."""
    return ()
