"""mono-quant-fp6: FP6 E3M2 float codes with absmax scales, as a mono-quant scheme plugin."""

from __future__ import annotations

from mono_quant.fp6._scheme import _VERSION as __version__
from mono_quant.fp6._scheme import DEFAULT_GROUP_SIZE, FP6_E3M2, Fp6Scheme

__all__ = ["DEFAULT_GROUP_SIZE", "FP6_E3M2", "Fp6Scheme", "__version__"]
