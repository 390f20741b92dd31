"""Reference math the checks compare against, written independently of core's layout code."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mono_quant.conformance._results import ConformanceError
from mono_quant.core import (
    Granularity,
    Packing,
    PerChannel,
    PerGroup,
    PerTensor,
    Profile,
    QParams,
    QuantDtype,
    Scheme,
)

__all__ = [
    "EPS32",
    "affine_tolerance",
    "check_bound",
    "code_difference",
    "expected_qparam_shape",
    "first_index",
    "gran_text",
    "granule_range",
    "normalized",
    "per_element",
    "reference_pack",
    "scale_floor",
    "zero_range_scale",
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


Ranges = tuple[torch.Tensor, torch.Tensor]


def float_slack(x: torch.Tensor, g: Granularity, ranges: Ranges | None = None) -> torch.Tensor:
    """Per element, the float32 rounding allowance: a few ulps of its granule's magnitude."""
    lo, hi = ranges if ranges is not None else granule_range(x, g)
    return 8 * EPS32 * torch.maximum(lo.abs(), hi.abs()) + 1e-45


#: Relative allowance on the dtype's step: scales rounded to float16 or bfloat16 pass.
STEP_SLACK = 2.0**-8
#: float32's smallest subnormal: the absolute precision of a scale that small.
TINY32 = 2.0**-149


def scale_floor(profile: Profile, compute: torch.dtype) -> float:
    """The smallest scale ``profile`` gives a granule whose range is not zero.

    Its ``eps`` (``None``: the compute dtype's smallest normal), or 0 for a profile
    that only replaces a scale of exactly 0 (``rounding="compressed-tensors"``).
    """
    if getattr(profile, "rounding", "torchao") == "compressed-tensors":
        return 0.0
    return profile.eps_for(compute)


def zero_range_scale(profile: Profile, compute: torch.dtype) -> float:
    """The scale ``profile`` gives an all-zero granule.

    Its floor, or the machine epsilon that replaces a zero scale under
    ``rounding="compressed-tensors"``.
    """
    if getattr(profile, "rounding", "torchao") == "compressed-tensors":
        return float(torch.finfo(compute).eps)
    return profile.eps_for(compute)


def step_ratio(scheme: Scheme) -> float:
    """How much coarser than the dtype's step a scheme's scale may be: its claim, with :data:`STEP_SLACK`."""
    return max(1.0, float(getattr(scheme.capabilities, "max_step_ratio", 1.0))) * (1 + STEP_SLACK)


def grid_scale(
    x: torch.Tensor, g: Granularity, qd: QuantDtype, eps: float, ratio: float, ranges: Ranges | None = None
) -> torch.Tensor:
    """Per element, the coarsest step an affine scheme may use for ``qd``: the dtype's, not its own.

    ``2 * max(|lo|, |hi|) / (qmax - qmin)`` of the element's granule (the symmetric
    scale, the largest a full-range affine scheme needs) times ``ratio`` (see
    :func:`step_ratio`), floored at the profile's ``eps``. A scheme whose scale is
    coarser uses fewer levels than the dtype has.
    """
    assert qd.qmin is not None and qd.qmax is not None
    lo, hi = ranges if ranges is not None else granule_range(x, g)
    amax = torch.maximum(-lo, hi)
    return torch.clamp(2 * amax / float(qd.qmax - qd.qmin) * ratio, min=eps)


def affine_tolerance(
    x: torch.Tensor,
    qp: QParams,
    g: Granularity,
    qd: QuantDtype,
    eps: float | None = None,
    ranges: Ranges | None = None,
    ratio: float = 1 + STEP_SLACK,
) -> torch.Tensor:
    """Per element, the round-trip error an affine scheme may make: half a step plus float slack.

    The step is the scheme's own scale, and (given the profile's ``eps``) no coarser
    than :func:`grid_scale`: an 8-bit grid posing as int16 meets ``scale / 2`` with its
    own scale, not with the dtype's. The slack covers float32 arithmetic: a few ulps of
    the granule's magnitude, and the float32 spacing of the codes themselves
    (``round(x / s) + zero_point`` is a float32 sum: 256 codes apart near 2**31, so
    32-bit dtypes get that much).
    """
    assert qp.scale is not None and qd.qmin is not None and qd.qmax is not None
    ranges = ranges if ranges is not None else granule_range(x.cpu(), g)
    scale = per_element(qp.scale.detach().cpu().to(torch.float64), tuple(x.shape), g)
    if eps is not None:
        scale = torch.minimum(scale, grid_scale(x.cpu(), g, qd, eps, ratio, ranges))
    code_spacing = 2.0**-23 * max(abs(qd.qmin), abs(qd.qmax))
    # A subnormal scale is only TINY32 precise, and each of the qmax - qmin steps may carry that.
    subnormal = (qd.qmax - qd.qmin) * TINY32
    return (0.5 + code_spacing) * scale + float_slack(x.cpu(), g, ranges) + subnormal


def nearest_code_error(scheme: Scheme, qd: QuantDtype, x: torch.Tensor, qp: QParams) -> torch.Tensor | None:
    """Per element, the smallest error any code could give (``None`` if too many codes).

    Codes that decode to NaN or ±inf are no candidates (no value is nearest to them);
    check_every_code_decodes_to_a_finite_value reports them.
    """
    assert qd.qmin is not None and qd.qmax is not None
    if qd.levels > MAX_ENUMERATED_LEVELS:
        return None
    xd = x.detach().cpu().to(torch.float64)
    best = torch.full(xd.shape, math.inf, dtype=torch.float64)
    for code in range(qd.qmin, qd.qmax + 1):
        codes = torch.full(tuple(x.shape), code, dtype=qd.torch_dtype, device=x.device)
        recon = scheme.dequantize(codes, qp).detach().cpu().to(torch.float64)
        err = torch.where(torch.isfinite(recon), (recon - xd).abs(), math.inf)
        best = torch.minimum(best, err)
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
    own: torch.Tensor | None = None
    if scheme.capabilities.affine:
        eps = scale_floor(scheme.profile, scheme.profile.compute_dtype_for(x.dtype))
        ranges = granule_range(x.cpu(), g)
        own = affine_tolerance(x, qp, g, qd, ranges=ranges)
        ratio = step_ratio(scheme)
        allowed = torch.minimum(own, affine_tolerance(x, qp, g, qd, eps, ranges, ratio))
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
    if own is not None and _at(err, i) <= _at(own, i):
        bound = (
            f"half a step of {qd.name}'s grid (+ float32 slack) = the granule's largest magnitude over "
            f"(qmax - qmin) / 2 = {(qd.levels - 1) / 2:g}, times max_step_ratio and {1 + STEP_SLACK:g} "
            f"({ratio:g}), floored at the profile's {eps:g}; the scheme's scale is coarser, so it uses "
            f"fewer levels than {qd.name} has"
        )
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


def code_difference(what: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    """How ``got`` differs from ``want`` (dtype, shape, or which values at which index), or ``None``.

    ``torch.equal`` is True for int8 and int32 tensors of the same values, so the
    dtype is compared first and a dtype-only difference is said to be one.

    >>> int32, int8 = torch.tensor([1, 2], dtype=torch.int32), torch.tensor([1, 2], dtype=torch.int8)
    >>> code_difference("codes", int32, int8)
    'codes are torch.int32, expected torch.int8 (the values are equal: only the dtype differs)'
    >>> code_difference("codes", torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 2], [3, 5]]))
    'codes differ in 1 of 4 elements; the first at index (1, 1): got 4, expected 5'
    """
    got, want = got.detach().cpu(), want.detach().cpu()
    if tuple(got.shape) != tuple(want.shape):
        return f"{what} have shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    wide = torch.float64 if got.dtype.is_floating_point or want.dtype.is_floating_point else torch.int64
    g, w = got.to(wide), want.to(wide)
    same = (g == w) | (torch.isnan(g) & torch.isnan(w)) if wide == torch.float64 else g == w
    if got.dtype != want.dtype:
        if bool(same.all()):
            only = "the values are equal: only the dtype differs"
            return f"{what} are {got.dtype}, expected {want.dtype} ({only})"
        return f"{what} are {got.dtype}, expected {want.dtype}; " + _values_differ(what, g, w, same)
    if got.dtype.is_floating_point:
        bits = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}
        view = bits.get(got.dtype, torch.int64)
        same = got.contiguous().view(view) == want.contiguous().view(view)
    if bool(same.all()):
        return None
    return _values_differ(what, g, w, same)


def _values_differ(what: str, got: torch.Tensor, want: torch.Tensor, same: torch.Tensor) -> str:
    i = first_index(~same)

    def show(t: torch.Tensor) -> str:
        value = t[i] if i else t
        return repr(float(value)) if t.dtype.is_floating_point else str(int(value))

    return (
        f"{what} differ in {int((~same).sum())} of {same.numel()} elements; the first at index {i}: "
        f"got {show(got)}, expected {show(want)}"
    )


def reference_pack(codes: torch.Tensor, packing: Packing) -> torch.Tensor:
    """The stored form of ``codes`` read straight from ``packing``'s fields, element by element.

    Along ``packing.axis``, each run of ``per_container`` codes becomes one container:
    code ``j`` of the run, plus ``offset``, goes into bits ``bits * j`` (``low_first``)
    or ``bits * (per_container - 1 - j)`` (``high_first``); a short last run is padded
    with stored zeros. Written as a loop over containers, independently of core's packer.

    >>> from mono_quant.core import Packing
    >>> reference_pack(torch.tensor([-8, 7, 1], dtype=torch.int8), Packing(4, 2, offset=8)).tolist()
    [240, 9]
    """
    containers = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}
    width = {"uint8": 8, "int16": 16, "int32": 32}[packing.container]
    moved = codes.detach().cpu().to(torch.int64).movedim(packing.axis, -1)
    lead, n = tuple(moved.shape[:-1]), moved.shape[-1]
    rows = moved.reshape(-1, n).tolist()
    count = -(-n // packing.per_container)
    out = []
    for row in rows:
        packed_row = []
        for c in range(count):
            word = 0
            for j in range(packing.per_container):
                k = c * packing.per_container + j
                stored = row[k] + packing.offset if k < n else 0
                slot = j if packing.order == "low_first" else packing.per_container - 1 - j
                word |= (stored & ((1 << packing.bits) - 1)) << (packing.bits * slot)
            if packing.container != "uint8" and word >= 2 ** (width - 1):
                word -= 2**width  # two's complement in a signed container
            packed_row.append(word)
        out.append(packed_row)
    result = torch.tensor(out, dtype=torch.int64).reshape(*lead, count)
    return result.to(containers[packing.container]).movedim(-1, packing.axis).contiguous()
