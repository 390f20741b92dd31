"""A quantized checkpoint in memory: name -> QuantizedTensor (or the tensor copied unchanged)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from mono_quant.cli._report import Report
from mono_quant.cli._tensor import QuantizedTensor

__all__ = ["QuantizedCheckpoint", "same_bits"]


@dataclass(frozen=True, eq=False)
class QuantizedCheckpoint(Mapping[str, "QuantizedTensor | torch.Tensor"]):
    """A read-only mapping of tensor names to :class:`QuantizedTensor` or unchanged tensors.

    Returned by ``quantize_state_dict``, ``quantize_model`` and ``load_quantized``;
    ``report`` is set when it was just quantized, ``metadata`` when it was loaded.

    >>> import torch
    >>> qc = QuantizedCheckpoint({"b": torch.zeros(2)})
    >>> list(qc), qc.quantized_names
    (['b'], [])
    """

    entries: dict[str, QuantizedTensor | torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    report: Report | None = None

    def __getitem__(self, name: str) -> QuantizedTensor | torch.Tensor:
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def quantized_names(self) -> list[str]:
        """Names of the quantized tensors, in order."""
        return [k for k, v in self.entries.items() if isinstance(v, QuantizedTensor)]

    def equals(self, other: Mapping[str, QuantizedTensor | torch.Tensor]) -> bool:
        """Same names (in any order), bit-identical codes and QParams, bit-identical unchanged tensors."""
        if set(self.entries) != set(other):
            return False
        for name, a in self.entries.items():
            b = other[name]
            if isinstance(a, QuantizedTensor):
                if not (isinstance(b, QuantizedTensor) and a.equals(b)):
                    return False
            elif isinstance(b, QuantizedTensor) or not same_bits(a, b):
                return False
        return True


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (NaN equals itself here, unlike ``torch.equal``).

    >>> same_bits(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    True
    """
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )
