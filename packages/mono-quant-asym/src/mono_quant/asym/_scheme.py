"""The asymmetric scheme: the full range [min(x, 0), max(x, 0)] onto [qmin, qmax]."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import Capabilities, MinMaxScheme, PerTensor, QuantDtype, asymmetric_qparams

__all__ = ["AsymmetricScheme"]

try:
    _VERSION = md.version("mono-quant-asym")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"


class AsymmetricScheme(MinMaxScheme):
    """Asymmetric (affine) quantization for every registered integer dtype.

    ``scale = (max(x, 0) - min(x, 0)) / (qmax - qmin)``, floored at the profile's
    eps, then ``zero_point = clamp(qmin - round(min(x, 0) / scale), qmin, qmax)``.
    The default profile is bit-exact with torch.ao's ``MinMaxObserver`` /
    ``PerChannelMinMaxObserver`` (``per_tensor_affine`` / ``per_channel_affine``)
    and with torchao's ``choose_qparams_affine(MappingType.ASYMMETRIC, eps=float32 eps)``.

    >>> import torch
    >>> qp = AsymmetricScheme().compute_qparams(torch.tensor([-1.0, 3.0]), "uint8")
    >>> qp.zero_point.item()
    64
    """

    name = "asymmetric"
    version = _VERSION
    capabilities = Capabilities(
        dtypes=None,
        profiles=("default", "torchao", "compressed-tensors", "custom"),
        symmetric=False,
        golden="torch.ao",
        default_dtype="int8",
        default_granularity=PerTensor(),
    )

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Asymmetric scale and zero-point from per-granule ``lo``/``hi``."""
        return asymmetric_qparams(lo, hi, dtype, self.profile)
