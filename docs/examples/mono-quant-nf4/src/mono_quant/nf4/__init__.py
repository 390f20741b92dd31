"""mono-quant-nf4: 4-bit NormalFloat (NF4) codebook quantization as a mono-quant scheme plugin."""

from __future__ import annotations

from mono_quant.nf4._codebook import (
    NF4,
    NF4_LEVELS,
    NF4_PACKING,
    nf4_codebook,
    nf4_decode,
    nf4_encode,
    nf4_thresholds,
)
from mono_quant.nf4._scheme import _VERSION as __version__
from mono_quant.nf4._scheme import DEFAULT_GROUP_SIZE, NF4Scheme

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "NF4",
    "NF4_LEVELS",
    "NF4_PACKING",
    "NF4Scheme",
    "__version__",
    "nf4_codebook",
    "nf4_decode",
    "nf4_encode",
    "nf4_thresholds",
]
