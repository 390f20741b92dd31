"""Which tensors get quantized: by name (globs), by kind of tensor, or by module type."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["DEFAULT_MODULE_TYPES", "Selection", "select_modules"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Module types ``quantize_model`` selects by default (Embedding only on request).
DEFAULT_MODULE_TYPES: tuple[type[torch.nn.Module], ...] = (
    torch.nn.Linear,
    torch.nn.Conv1d,
    torch.nn.Conv2d,
    torch.nn.Conv3d,
)


@dataclass(frozen=True)
class Selection:
    """Decides, per tensor, whether it is quantized or copied unchanged, and why.

    Floating tensors with 2 or more dimensions are quantized; biases, norms and
    other 1-D tensors, scalars and integer tensors are copied. ``include`` globs
    (``fnmatch`` on the full name) narrow that to the matching names;
    ``exclude`` globs always win. ``names``, when set, is an exact list of
    floating tensors of any rank (``quantize_model`` uses it).

    >>> s = Selection()
    >>> s.decide("fc.weight", torch.float32, (4, 8))
    (True, 'floating, 2+ dims')
    >>> s.decide("fc.bias", torch.float32, (4,))
    (False, '1-D (bias, norm, ...)')
    >>> Selection(exclude=("fc.*",)).decide("fc.weight", torch.float32, (4, 8))
    (False, 'excluded by fc.*')
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    names: frozenset[str] | None = None

    def describe(self) -> dict[str, object]:
        """The selection as JSON-ready data.

        >>> Selection(exclude=("lm_head*",)).describe()
        {'include': [], 'exclude': ['lm_head*'], 'names': None}
        """
        names = None if self.names is None else sorted(self.names)
        return {"include": list(self.include), "exclude": list(self.exclude), "names": names}

    def decide(self, name: str, dtype: torch.dtype, shape: Sequence[int]) -> tuple[bool, str]:
        """``(quantize?, reason)`` for the tensor ``name`` of ``dtype`` and ``shape``."""
        for pattern in self.exclude:
            if fnmatch.fnmatchcase(name, pattern):
                return False, f"excluded by {pattern}"
        if self.names is not None:
            if name not in self.names:
                return False, "not a selected module's weight"
            return self._kind(dtype, shape, explicit=True)
        if self.include:
            hit = next((p for p in self.include if fnmatch.fnmatchcase(name, p)), None)
            if hit is None:
                return False, "not matched by --include"
            return self._kind(dtype, shape, explicit=False, why=f"included by {hit}")
        return self._kind(dtype, shape, explicit=False)

    @staticmethod
    def _kind(
        dtype: torch.dtype, shape: Sequence[int], *, explicit: bool, why: str = "floating, 2+ dims"
    ) -> tuple[bool, str]:
        if dtype not in _FLOATS:
            return False, f"not floating point ({str(dtype).removeprefix('torch.')})"
        numel = 1
        for s in shape:
            numel *= s
        if len(shape) == 0:
            return False, "0-d scalar"
        if numel == 0:
            return False, "empty"
        if len(shape) < 2 and not explicit:
            return False, "1-D (bias, norm, ...)"
        return True, why


def select_modules(
    module: torch.nn.Module,
    types: Iterable[type[torch.nn.Module]] | None = None,
    *,
    embeddings: bool = False,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Weight names of the modules to quantize, and ``(module, reason)`` for those passed over.

    A module is selected when its type is one of ``types`` (default: Linear and
    Conv1d/2d/3d, plus Embedding when ``embeddings``), or a subclass that keeps
    its parent's ``forward``. A subclass with its own ``forward`` computes
    something else with its weight, so it is passed over with the reason, never
    silently treated as its parent; name its class in ``types`` to include it.

    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    >>> select_modules(m)
    (['0.weight'], [])
    """
    wanted = tuple(types) if types is not None else DEFAULT_MODULE_TYPES
    if embeddings and torch.nn.Embedding not in wanted:
        wanted = (*wanted, torch.nn.Embedding)
    selected: list[str] = []
    passed: list[tuple[str, str]] = []
    for name, mod in module.named_modules():
        cls = type(mod)
        base = next((t for t in wanted if isinstance(mod, t)), None)
        if base is None:
            continue
        if cls not in wanted and cls.forward is not base.forward:
            passed.append(
                (
                    name,
                    f"{cls.__name__} subclasses {base.__name__} but defines its own forward; "
                    f"pass types=(..., {cls.__name__}) to quantize it",
                )
            )
            continue
        weight = getattr(mod, "weight", None)
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            passed.append((name, "has no floating weight"))
            continue
        selected.append(f"{name}.weight" if name else "weight")
    return selected, passed
