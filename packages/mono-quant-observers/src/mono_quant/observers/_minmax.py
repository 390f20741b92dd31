"""The minmax observer: the running minimum and maximum of every granule."""

from __future__ import annotations

from typing import Any

import torch

from mono_quant.core import Granularity, Observer, ObserverCapabilities, QuantDtype, Scheme
from mono_quant.core._observer import ObserverNonFinitePolicy
from mono_quant.observers._version import VERSION

__all__ = ["MinMaxObserver", "row_minmax"]


def row_minmax(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum of float32 ``rows`` (exact: each is one of the values).

    >>> lo, hi = row_minmax(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
    >>> lo.tolist(), hi.tolist()
    ([-2.0, 3.0], [1.0, 4.0])
    """
    return torch.amin(rows, dim=1), torch.amax(rows, dim=1)


class MinMaxObserver(Observer):
    """The smallest and largest value seen in each granule, over every batch.

    Bit-exact with torch.ao's ``MinMaxObserver`` (per tensor) and
    ``PerChannelMinMaxObserver`` (per channel) when both feed the same scheme
    formula (the default profile). Order-free: any split or order of the same
    values gives the same range, so merging is exact.

    >>> from mono_quant.core import get_scheme
    >>> obs = MinMaxObserver()
    >>> obs.observe(torch.tensor([-1.0, 0.5]))
    >>> obs.observe(torch.tensor([3.0, 2.0]))
    >>> qp = obs.qparams(get_scheme("asymmetric"), "uint8")
    >>> round(qp.scale.item() * 255, 6), qp.zero_point.item()
    (4.0, 64)
    """

    name = "minmax"
    version = VERSION
    capabilities = ObserverCapabilities(
        reference="torch.ao.quantization MinMaxObserver / PerChannelMinMaxObserver"
    )

    def __init__(
        self, granularity: Granularity | None = None, *, nonfinite: ObserverNonFinitePolicy = "raise"
    ):
        super().__init__(granularity, nonfinite=nonfinite)

    def reset_state(self) -> None:
        """No range yet."""
        self._lo: torch.Tensor | None = None
        self._hi: torch.Tensor | None = None

    def update(self, rows: torch.Tensor) -> None:
        """Fold this batch's per-granule min and max into the running ones."""
        lo, hi = row_minmax(rows)
        if self._lo is None or self._hi is None:
            self._lo, self._hi = lo, hi
        else:
            self._lo = torch.min(lo, self._lo.to(lo.device))
            self._hi = torch.max(hi, self._hi.to(hi.device))

    def merge_state(self, other: MinMaxObserver) -> None:
        """The min of the mins and the max of the maxes."""
        if other._lo is None or other._hi is None:
            return
        if self._lo is None or self._hi is None:
            self._lo, self._hi = other._lo.clone(), other._hi.clone()
            return
        self._lo = torch.min(self._lo, other._lo.to(self._lo.device))
        self._hi = torch.max(self._hi, other._hi.to(self._hi.device))

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        """``lo`` and ``hi`` (``None`` before the first batch)."""
        return {"lo": self._lo, "hi": self._hi}

    def import_state(self, state: dict[str, Any]) -> None:
        """Set ``lo`` and ``hi``."""
        self._lo, self._hi = state["lo"], state["hi"]

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """The running min and max, shaped like the qparams."""
        assert self._lo is not None and self._hi is not None
        return _shaped(self._lo, self), _shaped(self._hi, self)


def _shaped(t: torch.Tensor, observer: Observer) -> torch.Tensor:
    """Per-row values ``(rows,)`` as the qparam shape: ``()`` per tensor, ``(C,)`` per channel."""
    return t.reshape(()) if observer.granularity.kind == "per_tensor" else t.reshape(-1)
