"""Core's own registry entries, delivered through the same hooks as any plugin."""

from __future__ import annotations

from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._hookspecs import hookimpl

__all__ = ["BUILTIN_DTYPES", "FLOAT8_E4M3FN", "FLOAT8_E5M2", "mono_quant_dtypes", "mono_quant_schemes"]

#: FP8 E4M3 (OCP "FN": no inf, NaN only at S.1111.111): ±448, subnormals down to 2**-9.
FLOAT8_E4M3FN = QuantDtype(
    "float8_e4m3fn",
    8,
    True,
    None,
    None,
    "float8_e4m3fn",
    kind="float_code",
    description="FP8 E4M3 codes times a scale (max 448, NaN but no inf)",
    exponent_bits=4,
    mantissa_bits=3,
    max_value=448.0,
    has_nan=True,
)
#: FP8 E5M2 (IEEE-like: inf and NaN): ±57344, subnormals down to 2**-16.
FLOAT8_E5M2 = QuantDtype(
    "float8_e5m2",
    8,
    True,
    None,
    None,
    "float8_e5m2",
    kind="float_code",
    description="FP8 E5M2 codes times a scale (max 57344, inf and NaN)",
    exponent_bits=5,
    mantissa_bits=2,
    max_value=57344.0,
    has_inf=True,
    has_nan=True,
)

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
    FLOAT8_E4M3FN,
    FLOAT8_E5M2,
)


@hookimpl
def mono_quant_dtypes() -> tuple[QuantDtype, ...]:
    """Core's built-in dtypes: int8, uint8, int16, int32, the float16/bfloat16 casts, FP8 E4M3/E5M2 codes."""
    return BUILTIN_DTYPES


@hookimpl
def mono_quant_schemes() -> tuple[()]:
    """Core ships no scheme: schemes come from plugins such as mono-quant-asym."""
    return ()
