"""Golden checks: bit-exact agreement with torch.ao's observers and reference quantize op."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._oracle import (
    FixedTensor,
    QuantInput,
    explicit_inputs,
    first_index,
    normalized,
    quant_inputs,
)
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QuantDtype, get_dtype

__all__: list[str] = []

# torch.ao's quantized *tensors* are deprecated; its observers and decomposed reference
# ops are not, but silence that one warning in case a torch release routes through them.
_DEPRECATION = r".*quantized tensor creation functions.*deprecated.*"

Reference = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


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
        obs(rows)
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


@conformance_check("dtype_granularity")
def check_qparams_match_torch_ao(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Golden schemes match torch.ao bit for bit: qparams, and codes on exact ties.

    Where golden='torch.ao' is claimed, scale and zero-point equal torch.ao's
    observers and codes its decomposed reference quantize, on float32 input.
    """
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    if caps.golden != "torch.ao":
        raise CheckSkipped(f"the scheme claims no torch.ao golden profile (golden={caps.golden!r})")
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    if scheme.profile.name != "default":
        raise CheckSkipped(f"golden values hold for the default profile, not {scheme.profile.name!r}")
    qd = get_dtype(case.dtype)
    if _observer_dtype(qd) is None:
        raise CheckSkipped(
            f"torch.ao's observers have no {qd.name} equivalent (they compute zero-points in int32, "
            f"which overflows for 32-bit ranges)"
        )
    if _reference_op() is None:
        raise CheckSkipped(f"torch {torch.__version__} has no quantized_decomposed reference ops")
    midpoint_up = scheme.profile.unsigned_symmetric_zero_point == "midpoint_up"

    def prop(inp: QuantInput) -> None:
        x = inp.make().to(torch.float32)
        g = inp.granularity
        qp = scheme.compute_qparams(x, qd.name, g)
        codes = scheme.quantize(x, qp)
        ref_scale, ref_zp, ref_codes = torch_ao_reference(x, g, qd, caps.symmetric, midpoint_up)
        assert qp.scale is not None and qp.zero_point is not None
        for what, got, want in (
            ("scale", qp.scale, ref_scale),
            ("zero-point", qp.zero_point.to(torch.int64), ref_zp),
            ("code", codes.to(torch.int64), ref_codes.to(torch.int64)),
        ):
            if got.shape != want.shape:
                raise ConformanceError(
                    f"{what} shape {tuple(got.shape)} differs from torch.ao's {tuple(want.shape)}",
                    dtype=qd.name,
                    granularity=g,
                )
            same = got == want if what != "scale" else got.view(torch.int32) == want.view(torch.int32)
            if not bool(same.all()):
                i = first_index(~same)
                value = float(x[i]) if what == "code" and i else None
                detail = (
                    f"{what} {got[i].item() if i else got.item()!r} at index {i} differs from torch.ao's "
                    f"{want[i].item() if i else want.item()!r}"
                )
                if value is not None:
                    detail += f" for x = {value!r}"
                raise ConformanceError(
                    detail + f"; {int((~same).sum())} of {same.numel()} differ", dtype=qd.name, granularity=g
                )

    ties = ties_input(qd, caps.symmetric)
    tie_grans: dict[str, Granularity] = {
        "per_tensor": PerTensor(),
        "per_channel": PerChannel(0),
        "per_group": PerGroup(-1, 8),
    }
    label = f"ties_input({qd.name!r}, symmetric={caps.symmetric})"
    explicit = [QuantInput(FixedTensor(ties, label), tie_grans[case.granularity])]
    explicit += explicit_inputs(case.granularity)
    ctx.for_each(quant_inputs(case.granularity, float_dtypes=("float32",)), prop, explicit=explicit)
