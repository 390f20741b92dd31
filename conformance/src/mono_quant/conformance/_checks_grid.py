"""Grid checks: codes use the dtype's whole grid, every code decodes, qparams hold their profile's numbers."""

from __future__ import annotations

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import LAYOUTS, granule_tensor
from mono_quant.conformance._oracle import first_index, gran_text, step_ratio, zero_range_scale
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_setup
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, QuantDtype, Scheme, get_dtype

__all__: list[str] = []

#: Codes enumerated per dtype when decoding every code; larger dtypes are sampled.
_MAX_DECODED = 4096


def ramp(qd: QuantDtype) -> torch.Tensor:
    """A float32 ramp over ``±(qmax - qmin) / 2`` units of a power of two, its two ends first.

    Both the symmetric and the asymmetric formula give it a scale of exactly one
    unit, so its ends land on ``qmin`` and ``qmax`` (within one code where the end
    is a rounding tie).
    """
    assert qd.qmin is not None and qd.qmax is not None
    half = (qd.qmax - qd.qmin) / 2
    unit = 2.0 ** -min(8, qd.bits // 2)
    inner = torch.linspace(-half, half, 13, dtype=torch.float64)[1:-1]
    ends = torch.tensor([-half, half], dtype=torch.float64)
    return (torch.cat([ends, inner]) * unit).to(torch.float32)  # ends first: a granule may hold fewer


def _granule_extremes(codes: torch.Tensor, g: Granularity) -> tuple[torch.Tensor, torch.Tensor]:
    """Per granule, the smallest and the largest code (granule-shaped, as qparams are)."""
    wide = codes.to(torch.int64)
    if isinstance(g, PerTensor):
        return wide.min(), wide.max()
    axis = g.axis % codes.dim()
    if isinstance(g, PerChannel):
        rows = wide.movedim(axis, 0).reshape(codes.shape[axis], -1)
        return rows.amin(1), rows.amax(1)
    assert isinstance(g, PerGroup)
    moved = wide.movedim(axis, -1)
    rows = moved.reshape(*moved.shape[:-1], moved.shape[-1] // g.group_size, g.group_size)
    return rows.amin(-1).movedim(-1, axis), rows.amax(-1).movedim(-1, axis)


@conformance_check("dtype_granularity_profile")
def check_codes_span_qmin_to_qmax(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Affine schemes: a ramp across each granule's range gets codes from qmin to qmax of the dtype.

    Within one code at each end (a rounding tie may decide the last one), plus
    what the scheme's declared max_step_ratio allows: a scheme that quantizes to a
    coarser grid than the dtype asked for fails here.
    """
    scheme, qd, kind = case_setup(subject, case)
    if not scheme.capabilities.affine:
        raise CheckSkipped("non-affine scheme: a codebook need not use every code on a ramp")
    assert qd.qmin is not None and qd.qmax is not None
    # One code for a tie at the end, the scale's declared coarseness (max_step_ratio, and
    # float16-rounded scales), and float32's code spacing beyond 2**24.
    span = qd.qmax - qd.qmin
    slack = 1 + int(span / 2 * (1 - 1 / step_ratio(scheme))) + int(2.0**-23 * max(abs(qd.qmin), abs(qd.qmax)))
    for shape, g in LAYOUTS[kind]:
        x = granule_tensor(shape, g, [ramp(qd)])
        where = f"ramp({qd.name!r}) in every granule of {shape}"
        ctx.note(dtype=qd.name, granularity=g, input=where)
        qp = scheme.compute_qparams(x, qd.name, g)
        lowest, highest = _granule_extremes(scheme.quantize(x, qp), g)
        for end, got, want, bad in (
            ("lowest", lowest, qd.qmin, lowest > qd.qmin + slack),
            ("highest", highest, qd.qmax, highest < qd.qmax - slack),
        ):
            if bool(bad.any()):
                i = first_index(bad)
                scale = float(qp.scale[i] if i else qp.scale) if qp.scale is not None else None
                raise ConformanceError(
                    f"the {end} code of granule {i} is {int(got[i] if i else got)}; a ramp across the "
                    f"granule's range must reach {want} ({qd.name} is [{qd.qmin}, {qd.qmax}]; {slack} "
                    f"code(s) short at most): scale {scale!r} gives fewer levels than the dtype has",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )


def _decode_layout(scheme: Scheme, n: int) -> tuple[tuple[int, ...], Granularity]:
    kinds = scheme.capabilities.granularities
    if "per_tensor" in kinds:
        return (n,), PerTensor()
    if "per_channel" in kinds:
        return (1, n), PerChannel(0)
    return (1, n), PerGroup(-1, n)


@conformance_check("dtype")
def check_every_code_decodes_to_a_finite_value(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Every code in [qmin, qmax] dequantizes to a finite value (all of them, up to 4096 codes)."""
    scheme = subject.get_scheme()
    if case.dtype is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    assert qd.qmin is not None and qd.qmax is not None
    if qd.levels <= _MAX_DECODED:
        codes = torch.arange(qd.qmin, qd.qmax + 1, dtype=torch.int64)
    else:
        inner = (
            torch.linspace(qd.qmin, qd.qmax, _MAX_DECODED - 4, dtype=torch.float64).round().to(torch.int64)
        )
        ends = torch.tensor([qd.qmin, qd.qmin + 1, qd.qmax - 1, qd.qmax], dtype=torch.int64)
        codes = torch.cat([ends, inner])
    shape, g = _decode_layout(scheme, codes.numel())
    for spec in (make_tensor(shape, seed=21), make_tensor(shape, kind="positive", seed=22, magnitude=37.0)):
        ctx.note(dtype=qd.name, granularity=g, input=f"codes {qd.qmin}..{qd.qmax} as a tensor of {shape}")
        qp = scheme.compute_qparams(spec, qd.name, g)
        values = scheme.dequantize(codes.reshape(shape).to(qd.torch_dtype), qp)
        bad = ~torch.isfinite(values.detach().cpu())
        if bool(bad.any()):
            flat = bad.reshape(-1)
            which = codes[flat].tolist()
            first = float(values.detach().cpu().reshape(-1)[flat][0])
            raise ConformanceError(
                f"code {which[0]} decodes to {first!r}; every code in [{qd.qmin}, {qd.qmax}] must "
                f"dequantize to a finite value ({len(which)} do not: {which[:16]})",
                dtype=qd.name,
                granularity=g,
                input=f"qparams of a {shape} input ({gran_text(g)}), codes {qd.qmin}..{qd.qmax}",
            )


@conformance_check("dtype_granularity_profile")
def check_qparams_follow_their_profile(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Qparams record the profile they were made with and hold its numbers: eps and compute dtype.

    An all-zero granule's scale is the profile's eps for the compute dtype; under
    compute dtype "input", half-precision input gets scales that are values of its
    dtype; under "float32", the same scales as the input converted to float32.
    """
    scheme, qd, kind = case_setup(subject, case)
    profile = scheme.profile
    for shape, g in LAYOUTS[kind][:1]:
        zeros = torch.zeros(shape)
        where = f"torch.zeros({shape})"
        ctx.note(dtype=qd.name, granularity=g, input=where)
        qp = scheme.compute_qparams(zeros, qd.name, g)
        if (qp.profile, qp.compute_dtype) != (profile.name, profile.compute_dtype):
            raise ConformanceError(
                f"qparams record profile {qp.profile!r} (compute dtype {qp.compute_dtype!r}); the scheme "
                f"computed them under {profile.name!r} ({profile.compute_dtype!r})",
                dtype=qd.name,
                granularity=g,
                input=where,
            )
        eps = zero_range_scale(profile, profile.compute_dtype_for(torch.float32))
        assert qp.scale is not None
        wrong = qp.scale != torch.tensor(eps, dtype=torch.float32)
        if bool(wrong.any()):
            i = first_index(wrong)
            raise ConformanceError(
                f"an all-zero granule has scale {float(qp.scale[i] if i else qp.scale)!r} at {i}; profile "
                f"{profile.name!r} floors the scale at eps = {eps!r} (eps={profile.eps!r} for float32 "
                f"compute, {getattr(profile, 'rounding', 'torchao')!r} rounding), so that is the scale of a "
                f"zero range",
                dtype=qd.name,
                granularity=g,
                input=where,
            )
        for half in (torch.float16, torch.bfloat16):
            x = make_tensor(shape, half, kind="normal", seed=23, magnitude=3.0)
            spec = f"make_tensor({shape}, {half}, seed=23, magnitude=3.0)"
            ctx.note(dtype=qd.name, granularity=g, input=spec)
            got = scheme.compute_qparams(x, qd.name, g).scale
            assert got is not None
            if profile.compute_dtype == "input":
                want = got.to(half).to(torch.float32)
                rule = f"computed in {half}, so every scale is a {half} value"
            else:
                ref = scheme.compute_qparams(x.float(), qd.name, g).scale
                assert ref is not None
                want, rule = ref, "computed in float32, so the scales of x and x.float() are the same"
            wrong = ~((got == want) | (got.isnan() & want.isnan()))
            if bool(wrong.any()):
                i = first_index(wrong)
                raise ConformanceError(
                    f"scale {float(got[i] if i else got)!r} at {i} under profile {profile.name!r}, "
                    f"compute dtype {profile.compute_dtype!r}: expected {float(want[i] if i else want)!r} "
                    f"({rule})",
                    dtype=qd.name,
                    granularity=g,
                    input=spec,
                )
