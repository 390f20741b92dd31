"""Entry point of mono-quant-observers: registers its five observers."""

from __future__ import annotations

from mono_quant.core import Observer, hookimpl
from mono_quant.observers._histogram import HistogramObserver
from mono_quant.observers._minmax import MinMaxObserver
from mono_quant.observers._moving_average import MovingAverageMinMaxObserver
from mono_quant.observers._mse import MSEObserver
from mono_quant.observers._percentile import PercentileObserver

__all__ = ["mono_quant_observers"]


@hookimpl
def mono_quant_observers() -> list[type[Observer]]:
    """``minmax``, ``moving-average-minmax``, ``percentile``, ``histogram`` and ``mse``."""
    return [MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, HistogramObserver, MSEObserver]
