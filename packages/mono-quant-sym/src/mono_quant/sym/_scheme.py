"""The symmetric scheme: scale from the largest magnitude, zero-point fixed."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import Capabilities, MinMaxScheme, PerTensor, QuantDtype, symmetric_qparams

__all__ = ["SymmetricScheme"]

try:
    _VERSION = md.version("mono-quant-sym")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"


class SymmetricScheme(MinMaxScheme):
    """Symmetric quantization for every registered integer dtype.

    ``scale = max(|min(x, 0)|, max(x, 0)) / ((qmax - qmin) / 2)``, floored at the
    profile's eps; the zero-point is 0 for signed dtypes and the midpoint
    (``(qmin + qmax + 1) // 2``: 128 for uint8, 8 for uint4) for unsigned ones.
    The default profile is bit-exact with torch.ao's ``MinMaxObserver`` /
    ``PerChannelMinMaxObserver`` (``per_tensor_symmetric`` / ``per_channel_symmetric``)
    and with torchao's ``choose_qparams_affine(MappingType.SYMMETRIC, eps=float32 eps)``.

    >>> import torch
    >>> from mono_quant.core import PerChannel
    >>> qp = SymmetricScheme().compute_qparams(torch.tensor([[-1.0, 0.5], [2.0, 1.0]]), "int8", PerChannel(0))
    >>> qp.zero_point.tolist()
    [0, 0]
    """

    name = "symmetric"
    version = _VERSION
    capabilities = Capabilities(
        dtypes=None,
        profiles=("default", "torchao", "compressed-tensors", "custom"),
        symmetric=True,
        golden="torch.ao",
        default_dtype="int8",
        default_granularity=PerTensor(),
    )

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric scale and zero-point from per-granule ``lo``/``hi``."""
        return symmetric_qparams(lo, hi, dtype, self.profile)
