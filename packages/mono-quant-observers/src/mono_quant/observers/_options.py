"""Option checks shared by the observers: each error names the option, the range and the value."""

from __future__ import annotations

import math

from mono_quant.core import UnsupportedOptionError

__all__ = ["integer_option", "number_option"]


def number_option(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is a real number inside the interval, else an error naming it.

    >>> number_option("averaging_constant", 0.5, low=0.0, high=1.0, low_open=True)
    0.5
    >>> number_option("averaging_constant", 0, low=0.0, high=1.0, low_open=True)
    Traceback (most recent call last):
    ...
    mono_quant.core.UnsupportedOptionError: averaging_constant must be a number in (0.0, 1.0]; got 0.
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise UnsupportedOptionError(f"{name} must be a number in {interval}; got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def integer_option(name: str, value: object, *, low: int) -> int:
    """``value`` if it is an int ``>= low``, else an error naming it.

    >>> integer_option("bins", 2048, low=1)
    2048
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UnsupportedOptionError(f"{name} must be an integer >= {low}; got {value!r}.")
    return value
