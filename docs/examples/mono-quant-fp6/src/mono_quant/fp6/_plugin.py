"""Entry point of mono-quant-fp6: registers the ``fp6_e3m2`` dtype and the ``fp6`` scheme."""

from __future__ import annotations

from mono_quant.core import QuantDtype, Scheme, hookimpl
from mono_quant.fp6._scheme import FP6_E3M2, Fp6Scheme

__all__ = ["mono_quant_dtypes", "mono_quant_schemes"]


@hookimpl
def mono_quant_dtypes() -> list[QuantDtype]:
    """The ``fp6_e3m2`` dtype: 6-bit float codes, held one per byte.

    >>> [d.name for d in mono_quant_dtypes()]
    ['fp6_e3m2']
    """
    return [FP6_E3M2]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """The ``fp6`` scheme (absmax per group of 32 along the last axis).

    >>> [s.name for s in mono_quant_schemes()]
    ['fp6']
    """
    return [Fp6Scheme()]
