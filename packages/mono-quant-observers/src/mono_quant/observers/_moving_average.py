"""Moving averages of per-batch ranges, merged exactly by replaying the other's batch ranges."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch

from mono_quant.core import Granularity, Observer, ObserverCapabilities, QuantDtype, Scheme
from mono_quant.core._observer import ObserverNonFinitePolicy, OptionValue
from mono_quant.observers._minmax import _shaped, row_minmax
from mono_quant.observers._options import number_option
from mono_quant.observers._version import VERSION

__all__ = ["MovingAverageMinMaxObserver", "RunningRangeObserver"]


class RunningRangeObserver(Observer):
    """A range per batch (:meth:`batch_range`), folded into a moving average.

    The first batch sets the range; every later one moves it by
    ``lo <- lo + c * (batch_lo - lo)`` (and the same for ``hi``) with
    ``c = averaging_constant``, in float32 exactly as torch.ao writes it. The
    average depends on the order of batches, so the state also keeps each
    batch's range (8 bytes per batch and channel): merging replays ``other``'s
    batch ranges onto this average, which equals observing its batches here.
    """

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        averaging_constant: float = 0.01,
        options: Mapping[str, OptionValue] | None = None,
    ) -> None:
        self.averaging_constant = number_option(
            "averaging_constant", averaging_constant, low=0.0, high=1.0, low_open=True
        )
        super().__init__(
            granularity,
            nonfinite=nonfinite,
            options={"averaging_constant": self.averaging_constant, **(options or {})},
        )

    @abc.abstractmethod
    def batch_range(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This batch's per-row ``(lo, hi)``, each of shape ``(rows,)`` float32."""

    def reset_state(self) -> None:
        """No average and no batch ranges yet."""
        self._lo: torch.Tensor | None = None
        self._hi: torch.Tensor | None = None
        # Batch ranges as rows of one buffer that doubles when full: a small tensor
        # per batch would be a long-lived allocation among the activations' large
        # ones, and fragment the heap (RSS grew by ~30 MB a batch on MiniLM).
        self._ranges = torch.empty((0, 2, 0))  # (capacity, 2, rows): [lo, hi] per batch
        self._count = 0

    def _remember(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self._count == self._ranges.shape[0]:
            grown = torch.empty((max(16, 2 * self._count), 2, lo.numel()), device=lo.device)
            if self._count:
                grown[: self._count] = self._ranges[: self._count].to(lo.device)
            self._ranges = grown
        self._ranges[self._count, 0] = lo
        self._ranges[self._count, 1] = hi
        self._count += 1

    def update(self, rows: torch.Tensor) -> None:
        """Fold this batch's range into the average and remember it."""
        lo, hi = self.batch_range(rows)
        self._fold(lo, hi)
        self._remember(lo, hi)

    def _fold(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self._lo is None or self._hi is None:
            self._lo, self._hi = lo, hi
            return
        c = self.averaging_constant
        # torch.ao's expression, operation for operation: the same float32 rounding.
        self._lo = self._lo + c * (lo.to(self._lo.device) - self._lo)
        self._hi = self._hi + c * (hi.to(self._hi.device) - self._hi)

    def merge_state(self, other: RunningRangeObserver) -> None:
        """Replay ``other``'s batch ranges onto this average (exact: the same operations)."""
        for lo, hi in other._ranges[: other._count].unbind(0):
            self._fold(lo.clone(), hi.clone())
            self._remember(lo, hi)

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        """The average (``lo``, ``hi``) and the batch ranges (``batch_lo``, ``batch_hi``: batches × rows)."""
        ranges = self._ranges[: self._count]
        return {
            "lo": self._lo,
            "hi": self._hi,
            "batch_lo": ranges[:, 0].clone() if self._count else None,
            "batch_hi": ranges[:, 1].clone() if self._count else None,
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Set the average and the batch ranges."""
        self._lo, self._hi = state["lo"], state["hi"]
        if state["batch_lo"] is not None:
            self._ranges = torch.stack([state["batch_lo"], state["batch_hi"]], dim=1)
            self._count = self._ranges.shape[0]

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """The averaged range, shaped like the qparams."""
        assert self._lo is not None and self._hi is not None
        return _shaped(self._lo, self), _shaped(self._hi, self)


class MovingAverageMinMaxObserver(RunningRangeObserver):
    """A moving average of each batch's min and max (torch.ao's ``averaging_constant``).

    Bit-exact with torch.ao's ``MovingAverageMinMaxObserver`` (per tensor) and
    ``MovingAveragePerChannelMinMaxObserver`` (per channel) on the same batch
    sequence. ``averaging_constant=1`` keeps only the last batch's range.

    >>> from mono_quant.core import get_scheme
    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> obs.observe(torch.tensor([-2.0, 2.0]))
    >>> obs.observe(torch.tensor([-4.0, 4.0]))
    >>> qp = obs.qparams(get_scheme("symmetric"), "int8")
    >>> round(qp.scale.item() * 127.5, 6)
    3.0
    """

    name = "moving-average-minmax"
    version = VERSION
    capabilities = ObserverCapabilities(
        order_free=False,
        reference="torch.ao.quantization MovingAverageMinMaxObserver / MovingAveragePerChannelMinMaxObserver",
    )

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        averaging_constant: float = 0.01,
    ) -> None:
        super().__init__(granularity, nonfinite=nonfinite, averaging_constant=averaging_constant)

    def batch_range(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's per-row min and max."""
        return row_minmax(rows)
