"""Golden checks: bit-exact agreement with torch.ao's observers and reference quantize op."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import FixedTensor, QuantInput, fixed_inputs, quant_inputs
from mono_quant.conformance._oracle import first_index, normalized
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_scheme
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QParams, QuantDtype, get_dtype

__all__: list[str] = []

# torch.ao's quantized *tensors* are deprecated; its observers and decomposed reference
# ops are not, but silence that one warning in case a torch release routes through them.
_DEPRECATION = r".*quantized tensor creation functions.*deprecated.*"

Reference = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: The largest integer each input dtype holds exactly (with all below it): torchao's codes
#: are computed in the input dtype, so a dtype with larger codes has no torchao oracle there.
_EXACT_INTEGERS = {torch.float32: 2**24, torch.bfloat16: 2**8, torch.float16: 2**11}


def _reference_op() -> Callable[..., torch.Tensor] | None:
    try:
        import torch.ao.quantization.fx._decomposed
    except ImportError:
        return None
    op: Callable[..., torch.Tensor] | None = getattr(
        getattr(torch.ops, "quantized_decomposed", None), "quantize_per_channel", None
    )
    return op


def _observer_dtype(qd: QuantDtype) -> torch.dtype | None:
    if qd.bits <= 8:
        return torch.qint8 if qd.signed else torch.quint8
    if qd.bits <= 16 and qd.signed:
        return torch.qint32
    return None


def torch_ao_reference(
    x: torch.Tensor, g: Granularity, qd: QuantDtype, symmetric: bool, midpoint_up: bool
) -> Reference:
    """torch.ao's (scale, zero-point, codes) for ``x``, shaped by the granularity contract.

    Scale and zero-point come from ``MinMaxObserver`` (per tensor) or
    ``PerChannelMinMaxObserver`` (per channel; per group on the ``(groups, group_size)``
    view); codes from ``quantized_decomposed.quantize_per_channel`` (round, then add
    the zero-point). For a symmetric scheme on an unsigned dtype with a custom range
    torch.ao takes the down-rounded midpoint; with ``midpoint_up`` the profile's
    ``(qmin + qmax + 1) // 2`` replaces it (torchao's and our default convention).
    """
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    assert qd.qmin is not None and qd.qmax is not None
    ao_dtype = _observer_dtype(qd)
    op = _reference_op()
    assert ao_dtype is not None and op is not None
    g = normalized(g, x.dim()) if x.dim() else PerTensor()
    if isinstance(g, PerTensor):
        rows = x.reshape(1, -1)
    elif isinstance(g, PerChannel):
        rows = x.movedim(g.axis, 0).reshape(x.shape[g.axis], -1)
    else:
        rows = x.movedim(g.axis, -1).reshape(-1, g.group_size)
    default_range = (ao_dtype, qd.qmin, qd.qmax) in ((torch.qint8, -128, 127), (torch.quint8, 0, 255))
    kwargs: dict[str, Any] = {"dtype": ao_dtype}
    if not default_range:  # naming even the default range switches torch.ao to its custom-range rules
        kwargs.update(quant_min=qd.qmin, quant_max=qd.qmax)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION)
        if isinstance(g, PerTensor):
            scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
            obs: torch.nn.Module = MinMaxObserver(qscheme=scheme, **kwargs)
        else:
            scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
            obs = PerChannelMinMaxObserver(ch_axis=0, qscheme=scheme, **kwargs)
        # What the observer's forward records (its per-channel aminmax is slow on small
        # tensors): the running min/max of float32 rows; its qparams are torch.ao's own.
        wide = rows.detach().to(torch.float32)
        if isinstance(g, PerTensor):
            obs.min_val, obs.max_val = wide.min(), wide.max()
        else:
            obs.min_val, obs.max_val = wide.amin(1), wide.amax(1)
        scale, zp = obs.calculate_qparams()  # type: ignore[operator]
        scale = scale.to(torch.float32).reshape(-1).expand(rows.shape[0]).contiguous()
        zp = zp.to(torch.int64).reshape(-1).expand(rows.shape[0]).contiguous()
        if symmetric and not qd.signed and not default_range and midpoint_up:
            zp = torch.full_like(zp, (qd.qmin + qd.qmax + 1) // 2)
        codes = op(rows, scale, zp, 0, qd.qmin, qd.qmax, qd.torch_dtype)
    if isinstance(g, PerTensor):
        return scale.reshape(()), zp.reshape(()), codes.reshape(x.shape)
    if isinstance(g, PerChannel):
        moved = (x.shape[g.axis],) + tuple(s for i, s in enumerate(x.shape) if i != g.axis)
        return scale, zp, codes.reshape(moved).movedim(0, g.axis)
    moved_x = x.movedim(g.axis, -1).shape
    lead, groups = tuple(moved_x[:-1]), moved_x[-1] // g.group_size
    return (
        scale.reshape(*lead, groups).movedim(-1, g.axis),
        zp.reshape(*lead, groups).movedim(-1, g.axis),
        codes.reshape(moved_x).movedim(-1, g.axis),
    )


def ties_input(qd: QuantDtype, symmetric: bool) -> torch.Tensor:
    """A (4, 8) float32 input of exact rounding ties, so the rounding convention shows.

    Every row has scale exactly 1.0 and holds x.5 values; an asymmetric row gets
    an odd zero-point, where rounding before or after adding it differs.
    """
    assert qd.qmin is not None and qd.qmax is not None
    span = float(qd.qmax - qd.qmin)
    if symmetric:
        row = [span / 2, -span / 2, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
    else:
        row = [-3.0, -3.0 + span, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    return torch.tensor([row] * 4, dtype=torch.float32)


def _torchao_primitives() -> Any:
    """The torchao quant primitives, or :class:`CheckSkipped` saying how to install them."""
    try:
        return importlib.import_module("torchao.quantization.quant_primitives")
    except ImportError:
        raise CheckSkipped(
            "torchao is not installed here, so the torchao profile has no oracle (pip install torchao)"
        ) from None


def torchao_reference(x: torch.Tensor, g: Granularity, qd: QuantDtype, symmetric: bool) -> Reference:
    """The torchao defaults (``eps=None``, math in ``x``'s dtype): scale, zero-point and codes for ``x``.

    ``choose_qparams_affine`` with the dtype's own ``[qmin, qmax]`` and then
    ``quantize_affine``, on granules given as torchao's ``block_size``. Raises
    :class:`CheckSkipped` when torchao is not installed.
    """
    primitives = _torchao_primitives()
    from mono_quant.conformance._oracles import torchao_block_size

    assert qd.qmin is not None and qd.qmax is not None
    mapping = primitives.MappingType.SYMMETRIC if symmetric else primitives.MappingType.ASYMMETRIC
    x = x.contiguous()
    block = torchao_block_size(tuple(x.shape), g) if x.dim() else ()
    flat = all(b == 1 for b in block)
    if flat:  # one element per granule: torchao would reduce over every dim, so double each element
        x = x.reshape(-1, 1).expand(-1, 2).contiguous()
        block = (1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale, zero_point = primitives.choose_qparams_affine(
            x, mapping, block, qd.torch_dtype, qd.qmin, qd.qmax, eps=None
        )
        codes = primitives.quantize_affine(x, block, scale, zero_point, qd.torch_dtype, qd.qmin, qd.qmax)
    if flat:
        codes = codes[:, 0]
    return scale.to(torch.float32), zero_point.to(torch.int64), codes


def _shaped(ref: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``ref`` in ``like``'s shape when only size-1 dimensions differ (oracles keep or drop them)."""
    return ref.reshape(like.shape) if ref.numel() == like.numel() else ref


def _compare(
    oracle: str,
    x: torch.Tensor,
    g: Granularity,
    qd: QuantDtype,
    qp: QParams,
    codes: torch.Tensor,
    ref: Reference,
) -> None:
    """Raise :class:`ConformanceError` at the first of scale, zero-point, codes that differs from ``ref``."""
    assert qp.scale is not None and qp.zero_point is not None
    for what, got, want in (
        ("scale", qp.scale, _shaped(ref[0], qp.scale)),
        ("zero-point", qp.zero_point.to(torch.int64), _shaped(ref[1], qp.zero_point)),
        ("code", codes.to(torch.int64), _shaped(ref[2].to(torch.int64), codes)),
    ):
        if got.shape != want.shape:
            raise ConformanceError(
                f"{what} shape {tuple(got.shape)} differs from {oracle}'s {tuple(want.shape)}",
                dtype=qd.name,
                granularity=g,
            )
        same = got == want if what != "scale" else got.view(torch.int32) == want.view(torch.int32)
        if not bool(same.all()):
            i = first_index(~same)
            detail = (
                f"{what} {got[i].item() if i else got.item()!r} at index {i} differs from {oracle}'s "
                f"{want[i].item() if i else want.item()!r}"
            )
            if what == "code":
                detail += f" for x = {float(x[i] if i else x)!r}"
            raise ConformanceError(
                detail + f"; {int((~same).sum())} of {same.numel()} differ", dtype=qd.name, granularity=g
            )


@conformance_check("dtype_granularity_profile")
def check_qparams_match_torch_ao(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Golden schemes match their profile's oracle bit for bit: torch.ao (default), torchao (torchao).

    Where golden='torch.ao' is claimed: under the default profile scale and
    zero-point equal torch.ao's observers and codes its decomposed reference
    quantize, on float32 input; under the torchao profile, all three equal
    torchao's choose_qparams_affine + quantize_affine with its defaults.
    """
    scheme = case_scheme(subject, case)
    caps = scheme.capabilities
    if caps.golden != "torch.ao":
        raise CheckSkipped(f"the scheme claims no torch.ao golden profile (golden={caps.golden!r})")
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    assert qd.qmin is not None and qd.qmax is not None
    qmin, qmax = qd.qmin, qd.qmax
    kind = case.granularity
    profile = scheme.profile.name
    if profile not in ("default", "torchao"):
        raise CheckSkipped(f"no oracle computes profile {profile!r} (torch.ao: default; torchao: torchao)")
    if _observer_dtype(qd) is None:
        raise CheckSkipped(
            f"torch.ao's observers and torchao's quantize_affine have no {qd.name} equivalent (they "
            f"compute zero-points in int32, which overflows for ranges wider than 16 bits)"
        )
    if profile == "default" and _reference_op() is None:
        raise CheckSkipped(f"torch {torch.__version__} has no quantized_decomposed reference ops")
    if profile == "torchao":
        _torchao_primitives()  # skips, with the reason, where torchao is not installed
    midpoint_up = scheme.profile.unsigned_symmetric_zero_point == "midpoint_up"
    input_dtypes: tuple[str, ...] = (
        ("float32",) if profile == "default" else ("float32", "bfloat16", "float16")
    )

    def prop(inp: QuantInput) -> None:
        x = inp.make()
        x = x.to(torch.float32) if profile == "default" or x.dtype == torch.float64 else x
        g = inp.granularity
        if profile == "default":
            ref, oracle = torch_ao_reference(x, g, qd, caps.symmetric, midpoint_up), "torch.ao"
        else:
            if max(-qmin, qmax) > _EXACT_INTEGERS[x.dtype]:
                return  # codes computed in x's dtype are not integers there: torchao wraps, no oracle
            ref, oracle = torchao_reference(x, g, qd, caps.symmetric), "torchao"
            if not bool(torch.isfinite(ref[0]).all()):
                return  # the range overflows the input dtype: torchao gives inf, mono-quant must raise
        qp = scheme.compute_qparams(x, qd.name, g)
        _compare(oracle, x, g, qd, qp, scheme.quantize(x, qp), ref)

    ties = ties_input(qd, caps.symmetric)
    tie_grans: dict[str, Granularity] = {
        "per_tensor": PerTensor(),
        "per_channel": PerChannel(0),
        "per_group": PerGroup(-1, 8),
    }
    label = f"ties_input({qd.name!r}, symmetric={caps.symmetric})"
    explicit = [QuantInput(FixedTensor(ties, label), tie_grans[kind])] + fixed_inputs(kind, qd)
    ctx.for_each(quant_inputs(kind, float_dtypes=input_dtypes), prop, explicit=explicit)
