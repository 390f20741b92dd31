"""The histogram observer: torch.ao's running histogram and its L2-optimal range search."""

from __future__ import annotations

import struct
from typing import Any

import torch

from mono_quant.core import Granularity, Observer, ObserverCapabilities, QuantDtype, Scheme
from mono_quant.core._observer import ObserverNonFinitePolicy
from mono_quant.observers._options import integer_option
from mono_quant.observers._version import VERSION

__all__ = ["HistogramObserver"]

#: torch.ao re-bins an old histogram through this many sub-bins per bin.
_UPSAMPLE_RATE = 16


def _f32(x: float) -> float:
    """``x`` rounded to float32, as torch rounds a Python scalar compared with a float32 tensor."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


# torch compares a float32 value ``c`` with a Python float ``y`` as ``c < f32(y)``. No
# float32 lies strictly between ``y`` and its rounding, so that is ``c < y`` unless ``c``
# is the rounding itself: the rounding is only needed when the double comparison holds.
def _below(c: float, y: float) -> bool:
    return c < y and c != _f32(y)


def _above(c: float, y: float) -> bool:
    return c > y and c != _f32(y)


class HistogramObserver(Observer):
    """A running histogram of every value; the range minimises the L2 quantization error.

    A port of torch.ao's ``HistogramObserver``, operation for operation, so its
    ranges and qparams are bit-exact with it on the same batch sequence: each
    batch is binned over the running ``[min, max]`` (the old histogram re-binned
    when the range grows), and :meth:`compute_range` runs torch.ao's non-linear
    search for the ``[lo, hi]`` of minimal L2 error with ``2 ** bits`` levels of
    the target dtype. Not order-free (bin edges follow the running range); a merge
    re-bins both histograms onto the joint range, as torch.ao does when a batch
    widens it, so it approximates sequential observation. Per tensor only.

    >>> from mono_quant.core import get_scheme
    >>> obs = HistogramObserver(bins=256)
    >>> obs.observe(torch.linspace(-1.0, 1.0, 1001))
    >>> qp = obs.qparams(get_scheme("symmetric"), "int8")
    >>> round(qp.scale.item() * 127.5, 4)  # uniform data: the search keeps the whole range
    1.0
    """

    name = "histogram"
    version = VERSION
    capabilities = ObserverCapabilities(
        granularities=("per_tensor",),
        order_free=False,
        merge="approximate",
        reference="torch.ao.quantization HistogramObserver",
    )

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        bins: int = 2048,
    ) -> None:
        self.bins = integer_option("bins", bins, low=1)
        super().__init__(granularity, nonfinite=nonfinite, options={"bins": self.bins})

    def reset_state(self) -> None:
        """An empty histogram and no range."""
        self._histogram = torch.zeros(self.bins)
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None

    # torch.ao HistogramObserver.forward, for a finite batch.
    def update(self, rows: torch.Tensor) -> None:
        """Bin the batch over the running range, re-binning the old histogram if it grows."""
        x = rows
        x_min, x_max = torch.aminmax(x)
        if self._min is None or self._max is None:
            self._min, self._max = x_min, x_max
            self._histogram = torch.histc(x, self.bins, min=x_min, max=x_max)  # type: ignore[arg-type]
            return
        current_min, current_max = self._min.to(x.device), self._max.to(x.device)
        new_min = torch.min(current_min, x_min)
        new_max = torch.max(current_max, x_max)
        update = torch.histc(x, self.bins, min=new_min, max=new_max)  # type: ignore[arg-type]
        histogram = self._histogram.to(x.device)
        if new_min == current_min and new_max == current_max:
            self._histogram = histogram + update
        else:
            self._histogram = self._combine(histogram, current_min, current_max, update, new_min, new_max)
            self._min, self._max = new_min, new_max

    def _upscale(
        self,
        histogram: torch.Tensor,
        orig_min: torch.Tensor,
        orig_max: torch.Tensor,
        update_min: torch.Tensor,
        update_max: torch.Tensor,
    ) -> torch.Tensor:
        # torch.ao _upscale_histogram: each old bin as 16 sub-bins, moved by their mid-points.
        histogram = histogram.repeat_interleave(_UPSAMPLE_RATE) / _UPSAMPLE_RATE
        bin_size = (orig_max - orig_min) / (self.bins * _UPSAMPLE_RATE)
        mid_points = (
            torch.linspace(
                orig_min,
                orig_max,
                self.bins * _UPSAMPLE_RATE + 1,
                device=orig_min.device,
            )[:-1].to(histogram.device)
            + 0.5 * bin_size
        )
        boundaries = torch.linspace(
            update_min,
            update_max,
            self.bins + 1,
            device=update_min.device,
        ).to(histogram.device)
        buckets = torch.bucketize(mid_points, boundaries, right=True) - 1
        buckets[buckets >= self.bins] = self.bins - 1
        buckets[buckets < 0] = 0
        return torch.bincount(buckets, weights=histogram, minlength=self.bins)

    def _combine(
        self,
        orig_hist: torch.Tensor,
        orig_min: torch.Tensor,
        orig_max: torch.Tensor,
        update_hist: torch.Tensor,
        update_min: torch.Tensor,
        update_max: torch.Tensor,
    ) -> torch.Tensor:
        # torch.ao _combine_histograms: the old histogram moved into the new range, plus the new one.
        if update_min == orig_min and update_max == orig_max:
            return orig_hist + update_hist
        if orig_min == orig_max:
            bin_value = torch.sum(orig_hist)
            moved = torch.histc(orig_min, bins=self.bins, min=update_min, max=update_max)  # type: ignore[arg-type]
            return moved * bin_value + update_hist
        return update_hist + self._upscale(orig_hist, orig_min, orig_max, update_min, update_max)

    def merge_state(self, other: HistogramObserver) -> None:
        """Both histograms re-binned onto the joint range and added (an approximation)."""
        if other._min is None or other._max is None:
            return
        if self._min is None or self._max is None:
            self._histogram = other._histogram.clone()
            self._min, self._max = other._min.clone(), other._max.clone()
            return
        device = self._histogram.device
        o_min, o_max, o_hist = other._min.to(device), other._max.to(device), other._histogram.to(device)
        new_min, new_max = torch.min(self._min, o_min), torch.max(self._max, o_max)
        moved = self._combine(o_hist, o_min, o_max, torch.zeros_like(o_hist), new_min, new_max)
        self._histogram = self._combine(self._histogram, self._min, self._max, moved, new_min, new_max)
        self._min, self._max = new_min, new_max

    def export_state(self) -> dict[str, torch.Tensor | int | float | str | None]:
        """The ``histogram`` (``bins`` counts) and its range ``min``/``max`` (``None`` before a batch)."""
        return {"histogram": self._histogram, "min": self._min, "max": self._max}

    def import_state(self, state: dict[str, Any]) -> None:
        """Set the histogram and its range."""
        self._histogram, self._min, self._max = state["histogram"], state["min"], state["max"]

    # torch.ao _compute_quantization_error, for bins [start, end] and dst_nbins levels.
    def _error(self, start: int, end: int, dst_nbins: int) -> float:
        assert self._min is not None and self._max is not None
        bin_width = (self._max.item() - self._min.item()) / self.bins
        dst_bin_width = bin_width * (end - start + 1) / dst_nbins
        if dst_bin_width == 0.0:
            return 0.0
        device = self._histogram.device
        src_bin = torch.arange(self.bins, device=device)
        src_bin_begin = (src_bin - start) * bin_width
        src_bin_end = src_bin_begin + bin_width
        dst_bin_of_begin = torch.clamp(
            torch.div(src_bin_begin, dst_bin_width, rounding_mode="floor"), 0, dst_nbins - 1
        )
        dst_bin_of_begin_center = (dst_bin_of_begin + 0.5) * dst_bin_width
        dst_bin_of_end = torch.clamp(
            torch.div(src_bin_end, dst_bin_width, rounding_mode="floor"), 0, dst_nbins - 1
        )
        density = self._histogram / bin_width
        norm = torch.zeros(self.bins, device=device)
        delta_begin = src_bin_begin - dst_bin_of_begin_center
        delta_end = dst_bin_width / 2
        norm += _l2(delta_begin, torch.ones(self.bins, device=device) * delta_end, density)
        norm += (dst_bin_of_end - dst_bin_of_begin - 1) * _l2(
            torch.tensor(-dst_bin_width / 2), torch.tensor(dst_bin_width / 2), density
        )
        dst_bin_of_end_center = dst_bin_of_end * dst_bin_width + dst_bin_width / 2
        norm += _l2(torch.tensor(-dst_bin_width / 2), src_bin_end - dst_bin_of_end_center, density)
        return float(norm.sum().item())

    # torch.ao _non_linear_param_search; the quantile walk reads the cumulative sum as
    # Python floats compared with float32-rounded bounds, which is what torch compares.
    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """torch.ao's search: shrink ``[min, max]`` bin by bin while the L2 error falls."""
        assert self._min is not None and self._max is not None
        dst_nbins = 2**dtype.bits
        bin_width = (self._max - self._min) / self.bins
        total = torch.sum(self._histogram).item()
        csum = torch.cumsum(self._histogram, dim=0).tolist()
        stepsize = 1e-5
        alpha, beta = 0.0, 1.0
        start_bin, end_bin = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            next_alpha = alpha + stepsize
            next_beta = beta - stepsize
            left, right = start_bin, end_bin
            low_bound, high_bound = next_alpha * total, next_beta * total
            while left < end_bin and _below(csum[left], low_bound):
                left += 1
            while right > start_bin and _above(csum[right], high_bound):
                right -= 1
            next_start_bin, next_end_bin = start_bin, end_bin
            if (left - start_bin) > (end_bin - right):
                next_start_bin = left
                alpha = next_alpha
            else:
                next_end_bin = right
                beta = next_beta
            if next_start_bin == start_bin and next_end_bin == end_bin:
                continue
            norm = self._error(next_start_bin, next_end_bin, dst_nbins)
            if norm > norm_min:
                break
            norm_min = norm
            start_bin, end_bin = next_start_bin, next_end_bin
        new_min = self._min + bin_width * start_bin
        new_max = self._min + bin_width * (end_bin + 1)
        return new_min.reshape(()), new_max.reshape(())


def _l2(delta_begin: torch.Tensor, delta_end: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """torch.ao ``_get_norm``: ``density * (end³ - begin³) / 3``, the L2 norm of a uniform spread."""
    norm = (delta_end * delta_end * delta_end - delta_begin * delta_begin * delta_begin) / 3
    return density * norm
