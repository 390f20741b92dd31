"""Hypothesis strategies for quantization inputs, built from the registry's own data.

Plugin authors use these in their own tests; the conformance suite uses them too.

>>> from hypothesis import given, settings
>>> from mono_quant.conformance import strategies as mqst
>>> @settings(max_examples=5)
... @given(mqst.tensors(dtypes=mqst.float_dtypes(["float32"])))
... def test_finite(x):
...     assert x.isfinite().all()
>>> test_finite()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from mono_quant.core import (
    Granularity,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    get_dtype,
    list_dtypes,
)

__all__ = [
    "ELEMENT_KINDS",
    "FLOAT_DTYPES",
    "TensorSpec",
    "float_dtypes",
    "granularities",
    "make_tensor",
    "quant_dtypes",
    "shapes",
    "tensor_specs",
    "tensors",
]

#: Input float dtypes a scheme must accept.
FLOAT_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}

#: Value patterns :func:`tensors` draws from. Each names an edge case users hit.
ELEMENT_KINDS: tuple[str, ...] = (
    "normal",  # N(0, s²) for a drawn magnitude s
    "uniform",  # U(-s, s)
    "zeros",  # all 0.0: zero range
    "constant",  # one repeated value: zero range away from 0
    "constant_rows",  # every slice along axis 0 constant (constant channels and groups)
    "positive",  # only values > 0 (range still includes 0)
    "negative",  # only values < 0
    "tiny",  # magnitudes around 1e-30 (bf16/fp32/fp64 hold them; fp16 flushes to 0)
    "huge",  # magnitudes near a quarter of the dtype's max (1e30 for fp32/fp64)
    "subnormal",  # subnormal magnitudes of the dtype
    "ties",  # multiples of s/2: exact rounding ties after scaling
    "outlier",  # mostly small values and one large one
)

_MAGNITUDES = (1e-3, 0.05, 1.0, 37.0, 1e4)


def float_dtypes(names: Sequence[str] | None = None) -> st.SearchStrategy[torch.dtype]:
    """Input float dtypes (float32, float16, bfloat16, float64, or those named).

    >>> float_dtypes(["float32"]).example()
    torch.float32
    """
    chosen = list(names) if names is not None else list(FLOAT_DTYPES)
    return st.sampled_from([FLOAT_DTYPES[n] for n in chosen])


def quant_dtypes(
    *, kind: str | None = "int", names: Sequence[str] | None = None
) -> st.SearchStrategy[QuantDtype]:
    """Registered quant dtypes: integer ones by default.

    ``kind="float"`` gives the float targets, ``kind=None`` all, ``names`` those named.

    >>> quant_dtypes(names=["int8"]).example().qmax
    127
    """
    if names is not None:
        entries = [get_dtype(n) for n in names]
    else:
        entries = [get_dtype(n) for n in list_dtypes()]
        if kind is not None:
            entries = [d for d in entries if d.kind == kind]
    if not entries:
        raise ValueError(f"no registered quant dtype matches kind={kind!r}, names={names!r}")
    return st.sampled_from(entries)


def shapes(
    *, min_dims: int = 1, max_dims: int = 4, min_side: int = 1, max_side: int = 12
) -> st.SearchStrategy[tuple[int, ...]]:
    """Tensor shapes with ``min_dims..max_dims`` dimensions of ``min_side..max_side``.

    >>> len(shapes(min_dims=2, max_dims=2).example())
    2
    """
    return st.integers(min_dims, max_dims).flatmap(
        lambda n: st.tuples(*[st.integers(min_side, max_side)] * n)
    )


def make_tensor(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    *,
    kind: str = "normal",
    seed: int = 0,
    magnitude: float = 1.0,
    noncontiguous: bool = False,
) -> torch.Tensor:
    """A deterministic tensor of an :data:`ELEMENT_KINDS` pattern (no hypothesis needed).

    >>> make_tensor((2, 3), kind="zeros").abs().sum().item()
    0.0
    >>> make_tensor((4, 4), noncontiguous=True).is_contiguous()
    False
    """
    if kind not in ELEMENT_KINDS:
        raise ValueError(f"kind must be one of {ELEMENT_KINDS}, got {kind!r}")
    shape = tuple(int(s) for s in shape)
    gen = torch.Generator().manual_seed(seed)
    info = torch.finfo(dtype)
    base = torch.randn(shape, generator=gen, dtype=torch.float64)
    if kind == "normal":
        x = base * magnitude
    elif kind == "uniform":
        x = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * magnitude
    elif kind == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "constant":
        x = torch.full(
            shape, float(base.reshape(-1)[0]) * magnitude if base.numel() else 1.0, dtype=torch.float64
        )
    elif kind == "constant_rows":
        rows = torch.randn((shape[0],) if shape else (), generator=gen, dtype=torch.float64) * magnitude
        x = rows.reshape(rows.shape + (1,) * (len(shape) - 1)).expand(shape).clone() if shape else rows
    elif kind == "positive":
        x = base.abs() * magnitude + magnitude * 1e-3
    elif kind == "negative":
        x = -(base.abs() * magnitude + magnitude * 1e-3)
    elif kind == "tiny":
        x = base * 1e-30
    elif kind == "huge":
        x = base.clamp(-3, 3) / 3 * min(1e30, info.max / 4)
    elif kind == "subnormal":
        x = base.clamp(-1, 1) * info.tiny * 0.5
    elif kind == "ties":
        x = torch.round(base * 8) / 2 * magnitude
    else:  # outlier
        x = base * 1e-2 * magnitude
        if x.numel():
            x.reshape(-1)[int(torch.randint(x.numel(), (1,), generator=gen))] = 50.0 * magnitude
    # Saturate rather than overflow: a magnitude near the dtype's max (fp16 outliers)
    # must stay finite, as every kind promises.
    x = x.clamp(-info.max, info.max).to(dtype)
    if noncontiguous and x.dim() >= 1:
        wide = torch.zeros(shape[:-1] + (shape[-1] * 2,), dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x


@dataclass(frozen=True)
class TensorSpec:
    """Everything :func:`make_tensor` needs, so a failing input can be printed and rebuilt.

    ``str(spec)`` is the ``make_tensor(...)`` call that reproduces the tensor.

    >>> spec = TensorSpec((2, 3), torch.float16, kind="ties", seed=7)
    >>> spec.make().dtype
    torch.float16
    >>> str(spec)
    "make_tensor((2, 3), torch.float16, kind='ties', seed=7, magnitude=1.0, noncontiguous=False)"
    """

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    kind: str = "normal"
    seed: int = 0
    magnitude: float = 1.0
    noncontiguous: bool = False

    def make(self) -> torch.Tensor:
        """The tensor this spec describes (a fresh one on every call)."""
        return make_tensor(
            self.shape,
            self.dtype,
            kind=self.kind,
            seed=self.seed,
            magnitude=self.magnitude,
            noncontiguous=self.noncontiguous,
        )

    def __str__(self) -> str:
        return (
            f"make_tensor({self.shape!r}, {self.dtype}, kind={self.kind!r}, seed={self.seed}, "
            f"magnitude={self.magnitude!r}, noncontiguous={self.noncontiguous})"
        )


@st.composite
def tensor_specs(
    draw: st.DrawFn,
    *,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    dtypes: st.SearchStrategy[torch.dtype] | None = None,
    kinds: Sequence[str] | None = None,
    noncontiguous: bool | None = None,
) -> TensorSpec:
    """:class:`TensorSpec` values: what :func:`tensors` draws, before the tensor is built.

    Draw specs instead of tensors when a failure message should say how to rebuild
    the input (``str(spec)``).

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=3)
    ... @given(tensor_specs(kinds=["zeros"]))
    ... def all_zero(spec):
    ...     assert float(spec.make().abs().sum()) == 0.0
    >>> all_zero()
    """
    shape = draw(shapes if shapes is not None else _default_shapes)
    dtype = draw(dtypes if dtypes is not None else float_dtypes())
    kind = draw(st.sampled_from(list(kinds) if kinds is not None else list(ELEMENT_KINDS)))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from(_MAGNITUDES))
    nc = draw(st.booleans()) if noncontiguous is None else noncontiguous
    return TensorSpec(tuple(shape), dtype, kind, seed, magnitude, nc)


@st.composite
def tensors(
    draw: st.DrawFn,
    *,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    dtypes: st.SearchStrategy[torch.dtype] | None = None,
    kinds: Sequence[str] | None = None,
    noncontiguous: bool | None = None,
) -> torch.Tensor:
    """Finite float tensors covering the edge cases of :data:`ELEMENT_KINDS`.

    ``noncontiguous=None`` draws it; ``True``/``False`` forces it. Values are built
    from a drawn seed with torch's generator, so large tensors stay fast.
    """
    spec = draw(tensor_specs(shapes=shapes, dtypes=dtypes, kinds=kinds, noncontiguous=noncontiguous))
    return spec.make()


_default_shapes = shapes()


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@st.composite
def granularities(
    draw: st.DrawFn,
    shape: Sequence[int],
    *,
    kinds: Sequence[str] = ("per_tensor", "per_channel", "per_group"),
    group_sizes: Sequence[int] | None = None,
    divisible: bool = True,
    negative_axes: bool = True,
) -> Granularity:
    """A granularity valid for ``shape``: any axis, negative too.

    For groups, a size that divides the axis (``divisible=True``) or one that does not.

    ``group_sizes`` restricts group sizes to those listed (axes they cannot fit
    are skipped); per-group falls back to per-channel when nothing fits.
    """
    ndim = len(shape)
    usable = [k for k in kinds if k == "per_tensor" or ndim > 0]
    kind = draw(st.sampled_from(usable))
    if kind == "per_tensor":
        return PerTensor()
    axis = draw(st.integers(0, ndim - 1))
    if negative_axes and draw(st.booleans()):
        axis -= ndim
    if kind == "per_channel":
        return PerChannel(axis)
    size = shape[axis]
    if divisible:
        options = _divisors(size)
        if group_sizes is not None:
            options = [g for g in options if g in group_sizes]
    else:
        options = [g for g in (group_sizes or range(2, size)) if g > 1 and size % g != 0]
    if not options:
        if "per_channel" in kinds:
            return PerChannel(axis)
        return PerTensor()
    return PerGroup(axis, draw(st.sampled_from(options)))


def _register_profiles() -> None:
    from hypothesis import HealthCheck, settings

    # CI is derandomized so a declared expected failure cannot flake; dev explores.
    # Both start from hypothesis' own defaults, not from whatever profile is loaded
    # when this module is (re)imported.
    base = settings.get_profile("default")
    settings.register_profile(
        "mono-quant-ci",
        parent=base,
        derandomize=True,
        max_examples=25,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile(
        "mono-quant-dev",
        parent=base,
        derandomize=False,
        max_examples=100,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


_register_profiles()
