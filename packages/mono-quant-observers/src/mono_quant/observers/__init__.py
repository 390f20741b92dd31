"""mono-quant-observers: activation observers as plugins, and calibration of a model with them."""

from __future__ import annotations

from mono_quant.observers._calibrate import CalibrationResult, CalibrationState, calibrate
from mono_quant.observers._histogram import HistogramObserver
from mono_quant.observers._minmax import MinMaxObserver
from mono_quant.observers._moving_average import MovingAverageMinMaxObserver, RunningRangeObserver
from mono_quant.observers._mse import MSEObserver
from mono_quant.observers._percentile import PercentileObserver
from mono_quant.observers._plan import CalibrationError, CalibrationPlan
from mono_quant.observers._version import VERSION as __version__

__all__ = [
    "CalibrationError",
    "CalibrationPlan",
    "CalibrationResult",
    "CalibrationState",
    "HistogramObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "RunningRangeObserver",
    "__version__",
    "calibrate",
]
