"""Group-wise int4 weight schemes (the W4A16 layout of GPTQ/AWQ/compressed-tensors)."""

from __future__ import annotations

import importlib.metadata as md

import torch

from mono_quant.core import (
    Capabilities,
    MinMaxScheme,
    PerGroup,
    QuantDtype,
    asymmetric_qparams,
    symmetric_qparams,
)

__all__ = ["DEFAULT_GROUP_SIZE", "Int4AsymmetricScheme", "Int4SymmetricScheme"]

try:
    _VERSION = md.version("mono-quant-int4")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"

#: Group size users know from GPTQ/AWQ checkpoints.
DEFAULT_GROUP_SIZE = 128


def _capabilities(symmetric: bool) -> Capabilities:
    return Capabilities(
        dtypes=("int4", "uint4"),
        granularities=("per_group", "per_channel", "per_tensor"),
        profiles=("default", "torchao", "compressed-tensors", "custom"),
        symmetric=symmetric,
        golden="torch.ao",
        default_dtype="int4",
        default_granularity=PerGroup(axis=-1, group_size=DEFAULT_GROUP_SIZE),
    )


class Int4SymmetricScheme(MinMaxScheme):
    """Symmetric int4, by default per group of 128 along the last (input) axis.

    The formula is core's :func:`~mono_quant.core.symmetric_qparams`: the same
    math as the ``symmetric`` scheme, with int4-first defaults (zero-point 0 for
    ``int4``, 8 for ``uint4``). The default profile is bit-exact with torchao's
    ``choose_qparams_affine(MappingType.SYMMETRIC, (1, 128), torch.int4,
    eps=float32 eps)`` + ``quantize_affine``.

    >>> import torch
    >>> qp = Int4SymmetricScheme().compute_qparams(torch.randn(8, 256))
    >>> tuple(qp.scale.shape), qp.dtype
    ((8, 2), 'int4')
    """

    name = "int4-symmetric"
    version = _VERSION
    capabilities = _capabilities(symmetric=True)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric scale and zero-point from per-group ``lo``/``hi``."""
        return symmetric_qparams(lo, hi, dtype, self.profile)


class Int4AsymmetricScheme(MinMaxScheme):
    """Asymmetric int4, by default per group of 128 along the last (input) axis.

    The formula is core's :func:`~mono_quant.core.asymmetric_qparams`, as in the
    ``asymmetric`` scheme; the zero-point lies in the dtype's range (-8..7 for
    ``int4``, the layout compressed-tensors' W4A16 asymmetric checkpoints use).
    The default profile is bit-exact with torchao's
    ``choose_qparams_affine(MappingType.ASYMMETRIC, (1, 128), torch.int4,
    eps=float32 eps)`` + ``quantize_affine``.

    >>> import torch
    >>> qp = Int4AsymmetricScheme().compute_qparams(torch.randn(8, 256), "uint4")
    >>> bool((qp.zero_point >= 0).all() and (qp.zero_point <= 15).all())
    True
    """

    name = "int4-asymmetric"
    version = _VERSION
    capabilities = _capabilities(symmetric=False)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Asymmetric scale and zero-point from per-group ``lo``/``hi``."""
        return asymmetric_qparams(lo, hi, dtype, self.profile)
