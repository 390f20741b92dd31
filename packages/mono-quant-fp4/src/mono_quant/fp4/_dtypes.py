"""The ``mxfp4`` and ``nvfp4`` registry entries: E2M1 codes, nibble packing and the scale storage, as data."""

from __future__ import annotations

from mono_quant.core import Packing, QuantDtype

__all__ = ["E2M1_PACKING", "MXFP4", "NVFP4"]

#: Two E2M1 bit patterns per byte along the last axis, the first in the low nibble: the
#: bytes of compressed-tensors' ``*fp4-pack-quantized`` ``weight_packed`` and torchao's ``pack_uint4``.
E2M1_PACKING = Packing(bits=4, per_container=2, container="uint8", axis=-1, order="low_first", offset=0)


def _e2m1(name: str, scale_dtype: str, description: str) -> QuantDtype:
    return QuantDtype(
        name,
        4,
        True,
        None,
        None,
        "uint8",
        kind="float_code",
        packing=E2M1_PACKING,
        description=description,
        exponent_bits=2,
        mantissa_bits=1,
        max_value=6.0,
        scale_dtype=scale_dtype,
    )


#: E2M1 codes (0, ±0.5 ... ±6) whose block scales are powers of two (E8M0 shared exponents).
MXFP4 = _e2m1("mxfp4", "float8_e8m0fnu", "MXFP4: E2M1 codes, power-of-two (E8M0) block scales")
#: E2M1 codes whose block scales are FP8 E4M3 values under a float32 per-tensor scale.
NVFP4 = _e2m1("nvfp4", "float8_e4m3fn", "NVFP4: E2M1 codes, FP8 E4M3 block scales, FP32 tensor scale")
