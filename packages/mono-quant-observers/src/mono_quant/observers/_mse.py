"""The mse observer: per batch, the clipping of [min, max] with the least quantization error."""

from __future__ import annotations

import torch

from mono_quant.core import (
    DEFAULT_PROFILE,
    Granularity,
    ObserverCapabilities,
    PerChannel,
    QParams,
    QuantDtype,
    Scheme,
    UnsupportedOptionError,
    asymmetric_qparams,
    get_dtype,
    symmetric_qparams,
)
from mono_quant.core._affine import dequantize_affine, quantize_affine
from mono_quant.core._observer import ObserverNonFinitePolicy
from mono_quant.observers._minmax import row_minmax
from mono_quant.observers._moving_average import RunningRangeObserver
from mono_quant.observers._options import integer_option, number_option
from mono_quant.observers._version import VERSION

__all__ = ["MSEObserver"]


class MSEObserver(RunningRangeObserver):
    """Grid search of the clipping range ``p * [min, max]`` that minimises the quantization error.

    llm-compressor's ``mse`` observer: for each batch, candidates
    ``p = 1, 1 - 1/grid, ...`` down to ``1 - maxshrink`` scale the batch's
    per-granule min and max; each candidate's qparams (core's symmetric or
    asymmetric formula for ``dtype``) fake-quantize the batch, and the candidate
    with the least ``sum(|x - dequantize(quantize(x))| ** norm)`` wins (the search
    stops after ``patience`` candidates without improvement). The chosen ranges of
    successive batches are averaged as the moving-average observer does
    (``averaging_constant``), so merging is exact and order matters.

    The search is for one target: :meth:`qparams` refuses a scheme whose
    symmetry or a dtype other than the one searched for. ``norm=2`` is the MSE
    (llm-compressor's default is ``norm=2.4``).

    >>> from mono_quant.core import get_scheme
    >>> obs = MSEObserver(dtype="int8", symmetric=True)
    >>> obs.observe(torch.cat([torch.linspace(-1.0, 1.0, 20001), torch.tensor([1.3])]))
    >>> qp = obs.qparams(get_scheme("symmetric"), "int8")
    >>> round(qp.scale.item() * 127.5, 4)  # 1.3 clipped to 0.9 * 1.3: less error overall
    1.17
    """

    name = "mse"
    version = VERSION
    capabilities = ObserverCapabilities(
        order_free=False,
        reference="llm-compressor's MSE observer (its grid search, transcribed onto core's qparams)",
    )

    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        nonfinite: ObserverNonFinitePolicy = "raise",
        dtype: str = "int8",
        symmetric: bool = False,
        grid: int = 100,
        maxshrink: float = 0.2,
        patience: int = 5,
        norm: float = 2.0,
        averaging_constant: float = 0.01,
    ) -> None:
        qd = get_dtype(dtype) if isinstance(dtype, str) else None
        if qd is None or qd.is_float or not qd.affine:
            raise UnsupportedOptionError(
                f"dtype must name a registered affine integer dtype such as 'int8'; got {dtype!r}."
            )
        if not isinstance(symmetric, bool):
            raise UnsupportedOptionError(f"symmetric must be True or False; got {symmetric!r}.")
        self.target = qd
        self.symmetric = symmetric
        self.grid = integer_option("grid", grid, low=1)
        self.maxshrink = number_option("maxshrink", maxshrink, low=0.0, high=1.0, high_open=True)
        self.patience = integer_option("patience", patience, low=1)
        self.norm = number_option("norm", norm, low=0.0, high=float("inf"), low_open=True, high_open=True)
        super().__init__(
            granularity,
            nonfinite=nonfinite,
            averaging_constant=averaging_constant,
            options={
                "dtype": qd.name,
                "symmetric": symmetric,
                "grid": self.grid,
                "maxshrink": self.maxshrink,
                "patience": self.patience,
                "norm": self.norm,
            },
        )

    def batch_range(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidate range with the least error on this batch, per row."""
        abs_lo, abs_hi = row_minmax(rows)
        formula = symmetric_qparams if self.symmetric else asymmetric_qparams
        best = torch.full_like(abs_lo, torch.finfo(torch.float32).max)
        # llm-compressor starts from lo=1, hi=0; the full range is the safe default
        # when no candidate's error is finite (values so large their error overflows).
        best_lo, best_hi = abs_lo.clone(), abs_hi.clone()
        no_improve = 0
        for i in range(int(self.maxshrink * self.grid)):
            p = 1 - i / self.grid
            lo, hi = p * abs_lo, p * abs_hi
            scale, zero_point = formula(lo, hi, self.target, DEFAULT_PROFILE)
            qp = QParams(scale, zero_point, dtype=self.target.name, granularity=PerChannel(0))
            codes = quantize_affine(rows, qp, self.target, check_finite=False)
            error = (dequantize_affine(codes, qp) - rows).abs_()
            error = error.square_() if self.norm == 2.0 else error.pow_(self.norm)
            err = error.sum(dim=1)
            better = err < best
            if bool(better.any()):
                best = torch.where(better, err, best)
                best_lo = torch.where(better, lo, best_lo)
                best_hi = torch.where(better, hi, best_hi)
                no_improve = 0
            else:
                no_improve += 1
                if no_improve >= self.patience:
                    break
        return best_lo, best_hi

    def compute_range(self, dtype: QuantDtype, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
        """The averaged searched range, if ``dtype`` and ``scheme`` are the target searched for."""
        if dtype.name != self.target.name or scheme.capabilities.symmetric != self.symmetric:
            kind = "symmetric" if self.symmetric else "asymmetric"
            asked = "symmetric" if scheme.capabilities.symmetric else "asymmetric"
            raise UnsupportedOptionError(
                f"observer 'mse' searched clipping ranges for {kind} {self.target.name}; it cannot "
                f"give qparams for {asked} scheme {scheme.name!r} with dtype {dtype.name!r}. Create it "
                f"with dtype={dtype.name!r}, symmetric={scheme.capabilities.symmetric}."
            )
        return super().compute_range(dtype, scheme)
