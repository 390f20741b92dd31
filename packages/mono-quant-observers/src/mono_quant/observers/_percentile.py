"""The percentile observer: exact order statistics from the tails of the observed values."""

from __future__ import annotations

import math
from typing import Any

import torch

from mono_quant.core import Granularity, Observer, ObserverCapabilities, ObserverError, QuantDtype, Scheme
from mono_quant.core._observer import ObserverNonFinitePolicy
from mono_quant.observers._minmax import _shaped
from mono_quant.observers._options import integer_option, number_option
from mono_quant.observers._version import VERSION

__all__ = ["PercentileObserver", "percentile_index"]

#: Values each tail keeps when ``capacity`` is not given, shared by the granules.
_DEFAULT_CAPACITY = 65536


def percentile_index(n: int, percentile: float) -> tuple[int, int, float]:
    """``(previous, next, gamma)``: where numpy reads percentile ``p`` of ``n`` sorted values.

    numpy's ``method="linear"``: the value is ``lerp(sorted[previous], sorted[next], gamma)``, with numpy's
    float64 arithmetic (``virtual = (n - 1) * (p / 100)``).

    >>> percentile_index(11, 50.0)
    (5, 6, 0.0)
    >>> percentile_index(5, 100.0)
    (4, 4, 0.0)
    """
    virtual = (n - 1) * (percentile / 100)
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    previous = math.floor(virtual)
    return previous, previous + 1, virtual - previous


def _lerp(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """Linear interpolation as numpy writes it, in float64 (``b - (b - a) * (1 - t)`` from ``t = 0.5`` on)."""
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


class PercentileObserver(Observer):
    """The ``lower`` and ``upper`` percentiles of every value seen, per granule, exactly.

    Equal, after rounding to float32, to ``numpy.percentile`` (``method="linear"``)
    of all observed values in float64: the state keeps the ``capacity`` smallest
    and largest values of each granule (never a histogram), which is exact as
    long as the percentile reads inside them; a batch that would push the needed
    values out of the tails is refused with the capacity to ask for. Memory: at
    most ``2 * capacity`` float32 values per granule; by default ``capacity`` is
    65536 shared by the granules (at least 64 each), so a per-channel observer
    stays as small as a per-tensor one. Order-free, merged exactly. ``lower``
    defaults to ``100 - upper``.

    >>> from mono_quant.core import get_scheme
    >>> obs = PercentileObserver(upper=90.0)
    >>> obs.observe(torch.arange(11.0) - 5.0)  # -5 .. 5
    >>> qp = obs.qparams(get_scheme("symmetric"), "int8")
    >>> round(qp.scale.item() * 127.5, 6)  # the 90th percentile of -5..5 is 4
    4.0
    """

    name = "percentile"
    version = VERSION
    capabilities = ObserverCapabilities(
        reference="numpy.percentile(method='linear') over all observed values"
    )

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        upper: float = 99.99,
        lower: float | None = None,
        capacity: int | None = None,
    ) -> None:
        self.upper = number_option("upper", upper, low=0.0, high=100.0)
        self.lower = number_option(
            "lower", 100.0 - self.upper if lower is None else lower, low=0.0, high=self.upper
        )
        self.capacity = None if capacity is None else integer_option("capacity", capacity, low=1)
        super().__init__(
            granularity,
            nonfinite=nonfinite,
            options={"upper": self.upper, "lower": self.lower, "capacity": self.capacity},
        )

    def reset_state(self) -> None:
        """No values yet."""
        self._count = 0
        self._low: torch.Tensor | None = None  # the smallest values of each row
        self._high: torch.Tensor | None = None  # the largest values of each row
        self._capacity = self.capacity  # per granule; the default is set by the first batch

    def _check_capacity(self, n: int, granules: int) -> None:
        """Refuse a count whose percentiles would read outside the kept tails."""
        if self._capacity is None:
            self._capacity = max(64, _DEFAULT_CAPACITY // granules)
        if n <= self._capacity:
            return
        need_low = percentile_index(n, self.lower)[1] + 1
        need_high = n - percentile_index(n, self.upper)[0]
        need = max(need_low, need_high)
        if need > self._capacity:
            raise ObserverError(
                f"observer 'percentile' (lower={self.lower}, upper={self.upper}) over {n} values per "
                f"granule needs its {need} most extreme values, but keeps capacity={self._capacity}. "
                f"Create it with capacity >= {need} (about (100 - upper) / 100 times the values per "
                f"granule you will observe, plus 2)."
            )

    def _tail(self, kept: torch.Tensor, new: torch.Tensor, *, largest: bool) -> torch.Tensor:
        """The ``capacity`` largest (or smallest) values of each row of ``kept`` and ``new`` together."""
        capacity = self._capacity
        assert capacity is not None
        if kept.shape[1] == capacity:
            # Once the tail is full, only values beyond its innermost one can enter it
            # (one equal to it changes nothing): usually a handful, so the selection is cheap.
            edge = kept.amin(dim=1, keepdim=True) if largest else kept.amax(dim=1, keepdim=True)
            beyond = new > edge if largest else new < edge
            if new.shape[0] == 1:
                new = new[beyond].reshape(1, -1)
            else:
                n = int(beyond.sum(dim=1).max())
                fill = float("-inf") if largest else float("inf")  # never chosen over kept values
                new = torch.topk(torch.where(beyond, new, fill), n, dim=1, largest=largest).values
            if new.shape[1] == 0:
                return kept
        values = torch.cat([kept, new], dim=1)
        if values.shape[1] <= capacity:
            return values
        return torch.topk(values, capacity, dim=1, largest=largest, sorted=False).values

    def _fold(self, low: torch.Tensor, high: torch.Tensor, count: int) -> None:
        self._check_capacity(self._count + count, low.shape[0])
        empty = low.new_empty((low.shape[0], 0))
        kept_low = empty if self._low is None else self._low.to(low.device)
        kept_high = empty if self._high is None else self._high.to(high.device)
        self._low = self._tail(kept_low, low, largest=False)
        self._high = self._tail(kept_high, high, largest=True)
        self._count += count

    def update(self, rows: torch.Tensor) -> None:
        """Keep the smallest and largest ``capacity`` values of each row, old and new together."""
        self._fold(rows, rows, rows.shape[1])  # _tail copies: the state never aliases rows

    def merge_state(self, other: PercentileObserver) -> None:
        """The tails of the union: exact, since a tail of the union lies in the tails of the parts."""
        if other._low is None or other._high is None:
            return
        self._fold(other._low, other._high, other._count)

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        """``count`` (values per granule) and the tails ``low`` and ``high`` (granules × kept)."""
        return {"count": self._count, "capacity": self._capacity, "low": self._low, "high": self._high}

    def import_state(self, state: dict[str, Any]) -> None:
        """Set the count and the tails."""
        self._count = int(state["count"])
        self._capacity = None if state["capacity"] is None else int(state["capacity"])
        self._low, self._high = state["low"], state["high"]

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``lower`` and ``upper`` percentiles, interpolated in float64 as numpy does."""
        assert self._low is not None and self._high is not None
        n = self._count
        first_high = n - self._high.shape[1]  # the ascending index of the high tail's smallest value
        p, q, g = percentile_index(n, self.lower)
        lo = _lerp(_kth(self._low, p), _kth(self._low, q), g)
        p, q, g = percentile_index(n, self.upper)
        hi = _lerp(_kth(self._high, p - first_high), _kth(self._high, q - first_high), g)
        return _shaped(lo.to(torch.float32), self), _shaped(hi.to(torch.float32), self)


def _kth(values: torch.Tensor, index: int) -> torch.Tensor:
    """Each row's ``index``-th smallest value (0-based), in float64: a selection, not a sort."""
    return torch.kthvalue(values, index + 1, dim=1).values.to(torch.float64)
