"""Registers ``broken-scale-not-clamped``: symmetric, but a zero range gives scale 0."""

from __future__ import annotations

import torch

from mono_quant.core import Capabilities, MinMaxScheme, QuantDtype, Scheme, hookimpl


class ScaleNotClamped(MinMaxScheme):
    """Symmetric quantization without the eps floor on the scale."""

    name = "broken-scale-not-clamped"
    version = "0.0.1"
    capabilities = Capabilities(symmetric=True, golden="torch.ao")

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale from the largest magnitude, with no floor; zero-point by the symmetric rule."""
        assert dtype.qmin is not None and dtype.qmax is not None
        amax = torch.maximum(-lo.clamp(max=0), hi.clamp(min=0))
        scale = amax / ((dtype.qmax - dtype.qmin) / 2)
        zp = 0 if dtype.signed else (dtype.qmin + dtype.qmax + 1) // 2
        return scale.float(), torch.full(scale.shape, zp, dtype=torch.int32)


@hookimpl
def mono_quant_schemes() -> list[Scheme]:
    """The broken scheme."""
    return [ScaleNotClamped()]
