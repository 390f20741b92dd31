"""The inputs property checks run on: fixed edge cases, adversarial ties per dtype, and drawn ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from mono_quant.conformance._oracle import gran_text
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, granularities, shapes, tensor_specs
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QuantDtype

__all__ = [
    "LAYOUTS",
    "FixedTensor",
    "QuantInput",
    "adversarial_inputs",
    "explicit_inputs",
    "fixed_inputs",
    "granule_tensor",
    "quant_inputs",
    "tie_patterns",
    "variants",
]


@dataclass(frozen=True, eq=False)
class FixedTensor:
    """A hand-built input, printed with its values (for inputs no :class:`TensorSpec` describes)."""

    tensor: torch.Tensor
    label: str

    def make(self) -> torch.Tensor:
        """A fresh copy of the tensor."""
        return self.tensor.clone()

    def __str__(self) -> str:
        flat = self.tensor.reshape(-1).tolist()
        shown = ", ".join(repr(v) for v in flat[:24]) + (
            f", ... ({len(flat)} values)" if len(flat) > 24 else ""
        )
        return f"{self.label} = [{shown}] ({self.tensor.dtype}, shape {tuple(self.tensor.shape)})"


@dataclass(frozen=True)
class QuantInput:
    """A tensor spec and a granularity: one input to a property check."""

    spec: TensorSpec | FixedTensor
    granularity: Granularity

    def make(self) -> torch.Tensor:
        """A fresh tensor of :attr:`spec`."""
        return self.spec.make()

    def __str__(self) -> str:
        return f"{self.spec} with {gran_text(self.granularity)}"


def quant_inputs(
    kind: str,
    *,
    float_dtypes: Sequence[str] = ("float32",),
    max_dims: int = 4,
    max_side: int = 6,
    kinds: Sequence[str] | None = None,
) -> st.SearchStrategy[QuantInput]:
    """Tensor specs with a granularity of ``kind`` that fits their shape (any axis)."""

    @st.composite
    def draw_input(draw: st.DrawFn) -> QuantInput:
        spec = draw(
            tensor_specs(
                shapes=shapes(min_dims=1, max_dims=max_dims, max_side=max_side),
                dtypes=st.sampled_from([FLOAT_DTYPES[n] for n in float_dtypes]),
                kinds=kinds,
            )
        )
        g = draw(granularities(spec.shape, kinds=[kind]))
        return QuantInput(spec, g)

    return draw_input()


def variants(kind: str | None, shape: Sequence[int]) -> list[Granularity]:
    """Deterministic granularities of ``kind`` for ``shape``: first and last axis, both signs."""
    ndim = len(shape)
    if kind is None or kind == "per_tensor" or ndim == 0:
        return [PerTensor()]
    if kind == "per_channel":
        channels: list[Granularity] = [PerChannel(0), PerChannel(-1)]
        return channels + ([PerChannel(1)] if ndim > 2 else [])
    out: list[Granularity] = []
    for axis in (-1, 0):
        size = shape[axis]
        gs = next((d for d in (4, 3, 2) if size % d == 0 and d < size), size)
        out.append(PerGroup(axis, gs))
    return out


_EXPLICIT_KINDS = ("normal", "positive", "negative", "zeros", "constant", "constant_rows", "ties", "outlier")


def explicit_inputs(kind: str | None, *, dtype: torch.dtype = torch.float32) -> list[QuantInput]:
    """The edge cases every property check runs before drawing any.

    Each element kind on (4, 8), plus 3-D non-contiguous inputs, over the
    granularity variants of ``kind``.
    """
    out = []
    for i, element_kind in enumerate(_EXPLICIT_KINDS):
        vs = variants(kind, (4, 8))
        out.append(QuantInput(TensorSpec((4, 8), dtype, element_kind, seed=i), vs[i % len(vs)]))
    for g in variants(kind, (2, 3, 4)):
        out.append(QuantInput(TensorSpec((2, 3, 4), dtype, "uniform", seed=11, noncontiguous=True), g))
    return out


def tie_patterns(qd: QuantDtype) -> list[tuple[str, torch.Tensor]]:
    """Per-granule float32 value patterns whose scale is exact and whose values sit on rounding ties.

    ``unit`` (a power of two) is the step of the grid the pattern is built on:

    - ``ties_odd_zero_point`` / ``ties_even_zero_point``: a range of exactly
      ``qmax - qmin`` units from ``-c`` units, so the asymmetric scale is one unit
      and the zero-point ``qmin + c`` is odd / even; ``x.5`` ties inside, at both ends;
    - ``symmetric_ties``: ``±(qmax - qmin) / 2`` units, so the symmetric scale is one
      unit; ``x.5`` ties around zero and next to both ends;
    - ``hair_around_ties``: the symmetric layout with each tie moved one float32 ulp
      below or above it;
    - ``low_end_tie_2`` / ``low_end_tie_3``: a range whose low end is ``-2.5`` / ``-3.5``
      units, so the zero-point's own rounding is a tie (the two ties round apart).

    >>> from mono_quant.core import get_dtype
    >>> [name for name, _ in tie_patterns(get_dtype("int8"))][:2]
    ['ties_odd_zero_point', 'ties_even_zero_point']
    """
    assert qd.qmin is not None and qd.qmax is not None
    span = qd.qmax - qd.qmin
    half = span / 2
    unit = 2.0 ** -min(8, qd.bits // 2)

    def within(values: Sequence[float], lo: float, hi: float) -> list[float]:
        return [lo, hi] + [v for v in values if lo < v < hi]

    ties = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.0]
    out: list[tuple[str, list[float]]] = []
    for name, parity in (("ties_odd_zero_point", 1), ("ties_even_zero_point", 0)):
        c = next((c for c in (3, 4, 2, 1) if 0 < c < span and (qd.qmin + c) % 2 == parity), 1)
        lo, hi = float(-c), float(span - c)
        out.append((name, within([lo + 0.5, hi - 0.5, *ties], lo, hi)))
    ends = [half - 0.5, half - 1, -(half - 0.5), -(half - 1)]
    out.append(("symmetric_ties", within([*ties, *ends], -half, half)))
    patterns = [(name, torch.tensor(v, dtype=torch.float64) * unit) for name, v in out]
    sym = torch.tensor(within([*ties, *ends], -half, half), dtype=torch.float64) * unit
    hair = sym.to(torch.float32)
    toward = torch.where(torch.arange(hair.numel()) % 2 == 0, math.inf, -math.inf).to(torch.float32)
    hair[2:] = torch.nextafter(hair[2:], toward[2:])  # the two ends stay, so the scale stays exact
    patterns.append(("hair_around_ties", hair.to(torch.float64)))
    for c in (2, 3):
        lo = -(c + 0.5)
        patterns.append(
            (f"low_end_tie_{c}", torch.tensor(within(ties, lo, lo + span), dtype=torch.float64) * unit)
        )
    return [(name, p.to(torch.float32)) for name, p in patterns]


def granule_tensor(shape: tuple[int, ...], g: Granularity, patterns: Sequence[torch.Tensor]) -> torch.Tensor:
    """A float32 tensor of ``shape`` whose granules under ``g`` hold ``patterns`` in turn, each tiled.

    Built independently of core's layout code: per channel along ``movedim(axis, 0)``,
    per group along the last axis after ``movedim(axis, -1)``.
    """

    def tiled(i: int, n: int) -> torch.Tensor:
        p = patterns[i % len(patterns)]
        return p.repeat(n // p.numel() + 1)[:n]

    if isinstance(g, PerTensor):
        return tiled(0, math.prod(shape)).reshape(shape).clone()
    axis = g.axis % len(shape)
    if isinstance(g, PerChannel):
        moved = (shape[axis],) + shape[:axis] + shape[axis + 1 :]
        rest = math.prod(moved[1:])
        rows = torch.stack([tiled(c, rest) for c in range(shape[axis])])
        return rows.reshape(moved).movedim(0, axis).contiguous()
    assert isinstance(g, PerGroup)
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    count = math.prod(moved) // g.group_size
    rows = torch.stack([tiled(r, g.group_size) for r in range(count)])
    return rows.reshape(moved).movedim(-1, axis).contiguous()


#: Shapes and granularities the adversarial patterns are laid out on, per kind: odd
#: sizes, 3-D with a middle channel axis, several groups per row, groups along axis 0.
LAYOUTS: dict[str, tuple[tuple[tuple[int, ...], Granularity], ...]] = {
    "per_tensor": (((11,), PerTensor()), ((3, 7), PerTensor()), ((2, 3, 5), PerTensor())),
    "per_channel": (((3, 6, 5), PerChannel(1)), ((16, 3), PerChannel(-1)), ((6, 13), PerChannel(0))),
    "per_group": (((2, 48), PerGroup(-1, 16)), ((32, 3), PerGroup(0, 16)), ((3, 32, 2), PerGroup(1, 16))),
}


def adversarial_inputs(kind: str | None, qd: QuantDtype) -> list[QuantInput]:
    """Fixed inputs built for ``qd``'s grid: every :func:`tie_patterns` pattern on every layout of ``kind``.

    Per tensor, one input per pattern; per channel and per group, one input per
    layout with a different pattern in each granule.
    """
    patterns = tie_patterns(qd)
    layouts = LAYOUTS.get(kind or "per_tensor", LAYOUTS["per_tensor"])
    out: list[QuantInput] = []
    if kind in (None, "per_tensor"):
        for i, (name, pattern) in enumerate(patterns):
            shape = layouts[i % len(layouts)][0]
            label = f"tie_patterns({qd.name!r})[{name!r}] tiled to {shape}"
            out.append(
                QuantInput(FixedTensor(granule_tensor(shape, PerTensor(), [pattern]), label), PerTensor())
            )
        return out
    for i, (shape, g) in enumerate(layouts):
        rotated = patterns[i:] + patterns[:i]
        names = ", ".join(name for name, _ in rotated)
        label = f"tie_patterns({qd.name!r}) granule by granule ({names}) on {shape}"
        out.append(QuantInput(FixedTensor(granule_tensor(shape, g, [p for _, p in rotated]), label), g))
    return out


def fixed_inputs(kind: str | None, qd: QuantDtype) -> list[QuantInput]:
    """Every fixed input a value check runs before drawing: the explicit and the adversarial ones."""
    return explicit_inputs(kind) + adversarial_inputs(kind, qd)
