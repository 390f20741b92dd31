"""Entry point of mono-quant-nf4: registers the ``nf4`` dtype and the ``nf4`` scheme."""

from __future__ import annotations

from mono_quant.core import QuantDtype, Scheme, hookimpl
from mono_quant.nf4._codebook import NF4
from mono_quant.nf4._scheme import NF4Scheme

__all__ = ["mono_quant_dtypes", "mono_quant_schemes"]


@hookimpl
def mono_quant_dtypes() -> list[QuantDtype]:
    """The ``nf4`` dtype: codes 0..15 into the NF4 codebook, packed two per byte.

    >>> [d.name for d in mono_quant_dtypes()]
    ['nf4']
    """
    return [NF4]


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """The ``nf4`` scheme (absmax per group of 64 along the last axis).

    >>> [s.name for s in mono_quant_schemes()]
    ['nf4']
    """
    return [NF4Scheme()]
