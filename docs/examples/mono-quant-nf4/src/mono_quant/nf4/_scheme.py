"""The NF4 scheme: per-group absmax scales and nearest-level codes of the NF4 codebook."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import (
    Capabilities,
    Granularity,
    GranuleLayout,
    MonoQuantError,
    PerGroup,
    QParams,
    QParamsError,
    QuantDtype,
    Scheme,
    check_finite,
    check_input,
    granule_minmax,
)
from mono_quant.nf4._codebook import nf4_decode, nf4_encode

__all__ = ["DEFAULT_GROUP_SIZE", "NF4Scheme"]

try:
    _VERSION = md.version("mono-quant-nf4")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"

#: The block size of QLoRA and bitsandbytes' ``quantize_4bit``.
DEFAULT_GROUP_SIZE = 64


def _label(name: str | None, what: str = "the input tensor") -> str:
    return f"{name!r}" if name else what


class NF4Scheme(Scheme):
    """4-bit NormalFloat (NF4), the codebook of QLoRA and bitsandbytes.

    Each granule (by default a group of 64 consecutive elements along the last
    axis, bitsandbytes' block size) gets ``scale = max(|x|)``, floored at the
    profile's eps so an all-zero group still has a finite positive scale. Each
    value is normalized, ``x * (1 / scale)`` in float32, and coded as the index
    of the nearest of the 16 NF4 levels; dequantizing multiplies the level by the
    scale. The grid is not affine, so ``zero_point`` is all zeros and unused,
    ``affine=False`` routes :func:`mono_quant.core.quantize` and
    :func:`~mono_quant.core.dequantize` here, and codes use the ``nf4`` dtype.

    0.0 is a level, so zeros round-trip exactly; so does each granule's
    largest-magnitude value (it normalizes to ±1). The worst error is half the
    widest gap between levels, ``(1 - 0.6961928) / 2 ≈ 0.152`` of the scale.

    >>> import torch
    >>> scheme = NF4Scheme()
    >>> w = torch.linspace(-1.0, 1.0, 256).reshape(2, 128)
    >>> qp = scheme.compute_qparams(w)
    >>> tuple(qp.scale.shape), qp.dtype, qp.affine
    ((2, 2), 'nf4', False)
    >>> codes = scheme.quantize(w, qp)
    >>> codes.dtype, int(codes.min()), int(codes.max())
    (torch.uint8, 0, 15)
    >>> bool(((scheme.dequantize(codes, qp) - w).abs() <= 0.152 * qp.scale.max()).all())
    True
    """

    name = "nf4"
    version = _VERSION
    capabilities = Capabilities(
        dtypes=("nf4",),
        granularities=("per_group", "per_channel", "per_tensor"),
        nonfinite=("raise",),
        nondivisible=("raise", "pad"),
        profiles=("default",),
        zero_exact=True,
        # Not symmetric: 7 negative and 8 positive levels, and the zero-point is not
        # the unsigned midpoint (8) that the symmetric rule asks of an unsigned dtype.
        symmetric=False,
        golden=None,
        affine=False,
        default_dtype="nf4",
        default_granularity=PerGroup(axis=-1, group_size=DEFAULT_GROUP_SIZE),
    )

    def compute_scale_zero_point(
        self,
        x: torch.Tensor,
        dtype: QuantDtype,
        granularity: Granularity,
        *,
        name: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-granule absmax (float32, floored at eps) and an all-zero int32 zero-point."""
        lo, hi = granule_minmax(x, granularity, nondivisible=self.nondivisible, name=name)
        # NaN and ±inf show up in the per-granule min/max: no extra pass over x.
        if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
            check_finite(x, name=name)
        absmax = torch.maximum(-lo, hi).to(torch.float32)
        if not bool(torch.isfinite(absmax).all()):
            raise MonoQuantError(
                f"{_label(name)} holds magnitudes up to {float(torch.maximum(-lo, hi).max())}, "
                f"beyond float32's range; NF4 scales are float32. Rescale the tensor first."
            )
        scale = torch.clamp(absmax, min=self.profile.eps_for(torch.float32))
        return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        """Unpacked uint8 NF4 codes of ``x``; a float target is a plain cast.

        >>> import torch
        >>> scheme = NF4Scheme()
        >>> x = torch.tensor([[-2.0, 0.0, 0.5, 2.0]])
        >>> scheme.quantize(x, scheme.compute_qparams(x, granularity=PerGroup(-1, 4))).tolist()
        [[0, 7, 10, 15]]
        """
        check_input(x, name=name)
        if qparams.is_float:
            return super().quantize(x, qparams, name=name)  # core's checked cast
        layout, scale = self._granules(tuple(x.shape), qparams, "input tensor", name)
        if not bool(torch.isfinite(x).all()):
            check_finite(x, name=name)
        rows = layout.to_rows(x).to(torch.float32)
        # Multiply by the reciprocal, as bitsandbytes does, so codes match its kernels.
        normalized = rows * (1.0 / scale.to(x.device))
        return layout.from_rows(nf4_encode(normalized))

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        """``level[q] * scale`` computed in float32, returned as ``dtype``.

        >>> import torch
        >>> scheme = NF4Scheme()
        >>> x = torch.tensor([[-2.0, 0.0, 0.5, 2.0]])
        >>> qp = scheme.compute_qparams(x, granularity=PerGroup(-1, 4))
        >>> scheme.dequantize(scheme.quantize(x, qp), qp).tolist()
        [[-2.0, 0.0, 0.4922246038913727, 2.0]]
        """
        if qparams.is_float:
            return q.to(dtype)
        layout, scale = self._granules(tuple(q.shape), qparams, "codes", name)
        values = nf4_decode(layout.to_rows(q)) * scale.to(q.device)
        return layout.from_rows(values).to(dtype)

    def _granules(
        self, shape: tuple[int, ...], qparams: QParams, what: str, name: str | None
    ) -> tuple[GranuleLayout, torch.Tensor]:
        """The granule layout of ``shape`` and the scale as a ``(rows, 1)`` column, checked."""
        if qparams.dtype != "nf4" or qparams.affine:
            raise QParamsError(
                f"the nf4 scheme needs non-affine qparams of dtype 'nf4' from its own "
                f"compute_qparams; got {'affine' if qparams.affine else 'non-affine'} qparams of "
                f"dtype {qparams.dtype!r} from scheme {qparams.scheme!r}. Use "
                f"mono_quant.core.quantize/dequantize, which pick the right scheme."
            )
        assert qparams.scale is not None
        layout = GranuleLayout.of(shape, qparams.granularity, nondivisible="pad", name=name)
        if tuple(qparams.scale.shape) != layout.qparam_shape:
            raise QParamsError(
                f"qparams do not fit {_label(name, 'the ' + what)}: {qparams.granularity} on shape "
                f"{shape} needs a scale of shape {layout.qparam_shape}, got "
                f"{tuple(qparams.scale.shape)}. Compute the qparams from this tensor."
            )
        scale = layout.qparams_to_rows(qparams.scale)
        finite = bool(torch.isfinite(scale).all()) and bool(torch.isfinite(1.0 / scale).all())
        if not (finite and bool((scale > 0).all())):
            raise QParamsError(
                "nf4 qparams need a finite scale > 0 with a finite reciprocal everywhere; "
                f"got values in [{float(scale.min())}, {float(scale.max())}]."
            )
        return layout, scale
