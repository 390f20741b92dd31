"""Reference math the checks compare against, written independently of core's layout code."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from mono_quant.conformance._results import ConformanceError
from mono_quant.conformance.strategies import (
    FLOAT_DTYPES,
    TensorSpec,
    granularities,
    shapes,
    tensor_specs,
)
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QParams, QuantDtype, Scheme

__all__ = [
    "EPS32",
    "FixedTensor",
    "QuantInput",
    "affine_tolerance",
    "check_bound",
    "expected_qparam_shape",
    "explicit_inputs",
    "first_index",
    "gran_text",
    "granule_range",
    "normalized",
    "per_element",
    "quant_inputs",
    "variants",
]

EPS32 = float(torch.finfo(torch.float32).eps)
#: The most codes the nearest-code check enumerates per element.
MAX_ENUMERATED_LEVELS = 256


def gran_text(g: Granularity) -> str:
    """A granularity as the constructor call that rebuilds it.

    >>> gran_text(PerGroup(-1, 4))
    'PerGroup(axis=-1, group_size=4)'
    """
    if isinstance(g, PerChannel):
        return f"PerChannel(axis={g.axis})"
    if isinstance(g, PerGroup):
        return f"PerGroup(axis={g.axis}, group_size={g.group_size})"
    return "PerTensor()"


def normalized(g: Granularity, ndim: int) -> Granularity:
    """``g`` with a non-negative axis (no range check: callers pass valid axes)."""
    if isinstance(g, PerChannel):
        return PerChannel(g.axis % ndim)
    if isinstance(g, PerGroup):
        return PerGroup(g.axis % ndim, g.group_size)
    return g


def expected_qparam_shape(shape: Sequence[int], g: Granularity, *, pad: bool = False) -> tuple[int, ...]:
    """The scale/zero-point shape the contract requires for ``shape`` under ``g``.

    >>> expected_qparam_shape((4, 10), PerGroup(-1, 4), pad=True)
    (4, 3)
    """
    shape = tuple(shape)
    if isinstance(g, PerTensor):
        return ()
    axis = g.axis % len(shape)
    if isinstance(g, PerChannel):
        return (shape[axis],)
    groups = math.ceil(shape[axis] / g.group_size) if pad else shape[axis] // g.group_size
    return shape[:axis] + (groups,) + shape[axis + 1 :]


def per_element(q: torch.Tensor, shape: Sequence[int], g: Granularity) -> torch.Tensor:
    """Qparam-shaped ``q`` broadcast to one value per element of ``shape``."""
    shape = tuple(shape)
    if isinstance(g, PerTensor):
        return q.reshape(()).expand(shape)
    axis = g.axis % len(shape)
    if isinstance(g, PerChannel):
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return q.reshape(view).expand(shape)
    return q.repeat_interleave(g.group_size, dim=axis).narrow(axis, 0, shape[axis])


def granule_range(x: torch.Tensor, g: Granularity) -> tuple[torch.Tensor, torch.Tensor]:
    """Per element, the min and max of its granule widened to include 0 (float64).

    A partial last group (``pad``) has its own range.
    """
    xd = x.detach().to(torch.float64)
    if xd.dim() == 0 or isinstance(g, PerTensor):
        lo, hi = xd.min().expand(xd.shape), xd.max().expand(xd.shape)
    elif isinstance(g, PerChannel):
        axis = g.axis % xd.dim()
        others = [d for d in range(xd.dim()) if d != axis]
        lo = xd.amin(dim=others, keepdim=True).expand(xd.shape) if others else xd
        hi = xd.amax(dim=others, keepdim=True).expand(xd.shape) if others else xd
    else:
        axis = g.axis % xd.dim()
        t = xd.movedim(axis, -1)
        n, gs = t.shape[-1], g.group_size
        count = math.ceil(n / gs)
        pad = count * gs - n
        lo_t = torch.cat([t, t.new_full((*t.shape[:-1], pad), math.inf)], -1)
        hi_t = torch.cat([t, t.new_full((*t.shape[:-1], pad), -math.inf)], -1)
        lo_g = lo_t.reshape(*t.shape[:-1], count, gs).amin(-1)
        hi_g = hi_t.reshape(*t.shape[:-1], count, gs).amax(-1)
        lo = lo_g.repeat_interleave(gs, dim=-1)[..., :n].movedim(-1, axis)
        hi = hi_g.repeat_interleave(gs, dim=-1)[..., :n].movedim(-1, axis)
    zero = torch.zeros((), dtype=torch.float64)
    return torch.minimum(lo, zero), torch.maximum(hi, zero)


def float_slack(x: torch.Tensor, g: Granularity) -> torch.Tensor:
    """Per element, the float32 rounding allowance: a few ulps of its granule's magnitude."""
    lo, hi = granule_range(x, g)
    return 8 * EPS32 * torch.maximum(lo.abs(), hi.abs()) + 1e-45


def affine_tolerance(x: torch.Tensor, qp: QParams, g: Granularity, qd: QuantDtype) -> torch.Tensor:
    """Per element, the round-trip error an affine scheme may make: scale/2 plus float slack.

    The slack covers float32 arithmetic: a few ulps of the granule's magnitude,
    and the float32 spacing of the codes themselves (``round(x / s) + zero_point``
    is a float32 sum: 256 codes apart near 2**31, so 32-bit dtypes get that much).
    """
    assert qp.scale is not None and qd.qmin is not None and qd.qmax is not None
    scale = per_element(qp.scale.detach().cpu().to(torch.float64), tuple(x.shape), g)
    code_spacing = 2.0**-23 * max(abs(qd.qmin), abs(qd.qmax))
    return (0.5 + code_spacing) * scale + float_slack(x.cpu(), g)


def nearest_code_error(scheme: Scheme, qd: QuantDtype, x: torch.Tensor, qp: QParams) -> torch.Tensor | None:
    """Per element, the smallest error any code could give (``None`` if too many codes)."""
    assert qd.qmin is not None and qd.qmax is not None
    if qd.levels > MAX_ENUMERATED_LEVELS:
        return None
    xd = x.detach().cpu().to(torch.float64)
    best = torch.full(xd.shape, math.inf, dtype=torch.float64)
    for code in range(qd.qmin, qd.qmax + 1):
        codes = torch.full(tuple(x.shape), code, dtype=qd.torch_dtype, device=x.device)
        recon = scheme.dequantize(codes, qp).detach().cpu().to(torch.float64)
        best = torch.minimum(best, (recon - xd).abs())
    return best


def first_index(mask: torch.Tensor) -> tuple[int, ...]:
    """The index of the first ``True`` in ``mask`` (row-major)."""
    if mask.dim() == 0:
        return ()
    flat = int(torch.nonzero(mask.reshape(-1))[0, 0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), mask.shape))


def _at(t: torch.Tensor, index: tuple[int, ...]) -> float:
    return float(t[index]) if index else float(t)


def check_bound(
    scheme: Scheme,
    qd: QuantDtype,
    x: torch.Tensor,
    qp: QParams,
    codes: torch.Tensor,
    deq: torch.Tensor,
    g: Granularity,
    *,
    what: str = "round-trip error",
) -> None:
    """Raise :class:`ConformanceError` where ``|x - deq|`` exceeds the scheme's bound.

    Affine: scale/2 (plus float slack) everywhere, which on a uniform grid means
    "the nearest code". Non-affine: no worse than the nearest code (plus slack).
    """
    xd = x.detach().cpu().to(torch.float64)
    err = (xd - deq.detach().cpu().to(torch.float64)).abs()
    if scheme.capabilities.affine:
        allowed = affine_tolerance(x, qp, g, qd)
        bound = "scale/2 (+ float32 slack)"
    else:
        best = nearest_code_error(scheme, qd, x, qp)
        if best is None:
            return
        allowed = best + float_slack(x.cpu(), g)
        bound = "the nearest code's error (+ float32 slack)"
    bad = ~(err <= allowed)
    if not bool(bad.any()):
        return
    i = first_index(bad)
    detail = (
        f"{what} {_at(err, i):.6g} at index {i} exceeds {bound} = {_at(allowed, i):.6g} "
        f"(x = {_at(xd, i)!r}, code {int(codes.detach().cpu()[i]) if i else int(codes)}, "
        f"dequantized {_at(deq.detach().cpu().to(torch.float64), i)!r}"
    )
    if qp.scale is not None and qp.zero_point is not None:
        s = per_element(qp.scale.detach().cpu().double(), tuple(x.shape), g)
        z = per_element(qp.zero_point.detach().cpu(), tuple(x.shape), g)
        lo, hi = granule_range(x.cpu(), g)
        detail += (
            f", scale {_at(s, i):.6g}, zero-point {int(z[i]) if i else int(z)}, "
            f"granule range [{_at(lo, i):.6g}, {_at(hi, i):.6g}]"
        )
    detail += f"); {int(bad.sum())} of {bad.numel()} elements exceed it"
    raise ConformanceError(detail, dtype=qd.name, granularity=g)


@dataclass(frozen=True, eq=False)
class FixedTensor:
    """A hand-built input, printed with its values (for inputs no :class:`TensorSpec` describes)."""

    tensor: torch.Tensor
    label: str

    def make(self) -> torch.Tensor:
        """A fresh copy of the tensor."""
        return self.tensor.clone()

    def __str__(self) -> str:
        return f"{self.label} = {self.tensor.tolist()}"


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
