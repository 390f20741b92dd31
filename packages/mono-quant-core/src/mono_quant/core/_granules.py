"""The one place that maps a tensor onto its granules: rows that share a scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mono_quant.core._granularity import (
    Granularity,
    NonDivisiblePolicy,
    PerChannel,
    PerGroup,
    PerTensor,
)
from mono_quant.core._kernels import minmax_rows

__all__ = ["GranuleLayout", "granule_minmax"]


@dataclass(frozen=True)
class GranuleLayout:
    """How a tensor of ``shape`` is viewed as a ``(rows, row_length)`` matrix.

    Each row is one granule (the whole tensor, one channel, or one group), so a
    per-row reduction gives per-granule statistics and a per-row broadcast applies
    per-granule qparams. ``to_rows`` / ``from_rows`` move between the two views;
    ``qparams_to_rows`` / ``rows_to_qparams`` do the same for scale-shaped tensors.
    """

    shape: tuple[int, ...]
    granularity: Granularity
    qparam_shape: tuple[int, ...]
    padded: int  # elements appended along the group axis (per-group "pad" only)

    @classmethod
    def of(
        cls,
        shape: tuple[int, ...],
        granularity: Granularity,
        *,
        nondivisible: NonDivisiblePolicy = "raise",
        name: str | None = None,
    ) -> GranuleLayout:
        """The layout of ``shape`` under ``granularity`` (axis normalized, sizes checked)."""
        g = granularity.normalize(len(shape), name=name)
        qshape = g.qparam_shape(shape, nondivisible=nondivisible, name=name)
        padded = 0
        if isinstance(g, PerGroup):
            padded = qshape[g.axis] * g.group_size - shape[g.axis]
        return cls(tuple(shape), g, qshape, padded)

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(rows, row_length)``; a view where the memory layout allows."""
        g = self.granularity
        if isinstance(g, PerTensor):
            return x.reshape(1, -1)
        if isinstance(g, PerChannel):
            return x.movedim(g.axis, 0).reshape(self.shape[g.axis], -1)
        t = x.movedim(g.axis, -1)
        if self.padded:
            # Repeat the last element: the partial group's min/max stay its own.
            tail = t[..., -1:].expand(*t.shape[:-1], self.padded)
            t = torch.cat([t, tail], dim=-1)
        return t.reshape(-1, g.group_size)

    def from_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_rows`: a contiguous tensor of the original shape."""
        g = self.granularity
        if isinstance(g, PerTensor):
            return rows.reshape(self.shape)
        if isinstance(g, PerChannel):
            moved = (self.shape[g.axis],) + self.shape[: g.axis] + self.shape[g.axis + 1 :]
            return rows.reshape(moved).movedim(0, g.axis).contiguous()
        moved = self.shape[: g.axis] + self.shape[g.axis + 1 :] + (self.shape[g.axis] + self.padded,)
        t = rows.reshape(moved)
        if self.padded:
            t = t[..., : self.shape[g.axis]]
        return t.movedim(-1, g.axis).contiguous()

    def qparams_to_rows(self, q: torch.Tensor) -> torch.Tensor:
        """A scale-shaped tensor as a ``(rows, 1)`` column matching :meth:`to_rows`."""
        g = self.granularity
        if isinstance(g, PerGroup):
            return q.movedim(g.axis, -1).reshape(-1, 1)
        return q.reshape(-1, 1)

    def rows_to_qparams(self, r: torch.Tensor) -> torch.Tensor:
        """Per-row values (``(rows,)``) as a tensor of :attr:`qparam_shape`."""
        g = self.granularity
        if isinstance(g, PerGroup):
            moved = (
                self.qparam_shape[: g.axis] + self.qparam_shape[g.axis + 1 :] + (self.qparam_shape[g.axis],)
            )
            return r.reshape(moved).movedim(-1, g.axis).contiguous()
        return r.reshape(self.qparam_shape)


def granule_minmax(
    x: torch.Tensor,
    granularity: Granularity,
    *,
    nondivisible: NonDivisiblePolicy = "raise",
    name: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-granule minimum and maximum of ``x``, shaped like the qparams.

    The values keep ``x``'s dtype (a min or max is one of the inputs, so it is
    exact). NaN propagates into the granule's min and max, and ±inf shows up as
    itself, so a caller can test finiteness on these small tensors instead of
    making another pass over ``x``.

    >>> import torch
    >>> lo, hi = granule_minmax(torch.tensor([[1.0, -2.0], [3.0, 4.0]]), PerChannel(0))
    >>> lo.tolist(), hi.tolist()
    ([-2.0, 3.0], [1.0, 4.0])
    """
    layout = GranuleLayout.of(tuple(x.shape), granularity, nondivisible=nondivisible, name=name)
    lo, hi = minmax_rows(layout.to_rows(x))
    return layout.rows_to_qparams(lo), layout.rows_to_qparams(hi)
