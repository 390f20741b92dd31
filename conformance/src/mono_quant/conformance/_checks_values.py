"""Value checks: zero range, code range, round-trip error, exact zero, the symmetric rule."""

from __future__ import annotations

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import QuantInput, fixed_inputs, quant_inputs, variants
from mono_quant.conformance._oracle import (
    MAX_ENUMERATED_LEVELS,
    check_bound,
    expected_qparam_shape,
    first_index,
    gran_text,
    normalized,
    per_element,
)
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_scheme, case_setup
from mono_quant.conformance.strategies import FLOAT_DTYPES
from mono_quant.core import Granularity, Scheme, get_dtype

__all__: list[str] = []

#: Per-granule constants for the zero-range cases; 0.0 among them on purpose.
_CONSTANTS = (0.0, 1.5, -0.75, 2.0**-20, 1e-30, -3.0e4)


def input_dtypes(scheme: Scheme) -> tuple[str, ...]:
    # A scheme computing in the input's dtype (torchao's profile) cannot meet the
    # float32 error bound on half-precision input; it is held to float32 input.
    return tuple(FLOAT_DTYPES) if scheme.profile.compute_dtype == "float32" else ("float32", "float64")


def constant_granules(shape: tuple[int, ...], g: Granularity, values: tuple[float, ...]) -> torch.Tensor:
    """A float32 tensor of ``shape`` whose every granule under ``g`` is constant (cycling ``values``)."""
    qshape = expected_qparam_shape(shape, g, pad=True)
    n = 1
    for s in qshape:
        n *= s
    per_granule = torch.tensor([values[i % len(values)] for i in range(n)], dtype=torch.float64).reshape(
        qshape
    )
    return per_element(per_granule, shape, normalized(g, len(shape))).to(torch.float32).contiguous()


@conformance_check("dtype_granularity_profile")
def check_zero_range_gives_finite_scale(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """All-zero and constant tensors, channels and groups give a finite scale > 0.

    Also an integer zero-point in [qmin, qmax], 0.0 back exactly, and the
    constant back within the scheme's error bound.
    """
    scheme, qd, kind = case_setup(subject, case)
    assert qd.qmin is not None and qd.qmax is not None
    shape = (4, 6)
    inputs: list[tuple[str, torch.Tensor, Granularity]] = []
    for g in variants(kind, shape):
        inputs.append(("torch.zeros((4, 6))", torch.zeros(shape), g))
        for c in _CONSTANTS[1:]:
            inputs.append((f"torch.full((4, 6), {c!r})", torch.full(shape, c), g))
        if kind != "per_tensor":
            label = f"every granule of {gran_text(g)} constant, cycling {_CONSTANTS}"
            inputs.append((label, constant_granules(shape, g, _CONSTANTS), g))
    for where, x, g in inputs:
        ctx.note(dtype=qd.name, granularity=g, input=where)
        qp = scheme.compute_qparams(x, qd.name, g)

        def fail(detail: str, g: Granularity = g, where: str = where) -> ConformanceError:
            return ConformanceError(detail, dtype=qd.name, granularity=g, input=where)

        if qp.scale is None or qp.zero_point is None:
            raise fail("an integer dtype gave no scale or zero-point")
        scale, zp = qp.scale, qp.zero_point
        bad = ~(torch.isfinite(scale) & (scale > 0))
        if bool(bad.any()):
            i = first_index(bad)
            raise fail(f"scale is {float(scale[i]) if i else float(scale)!r} at {i}; expected finite and > 0")
        if zp.dtype.is_floating_point or zp.dtype == torch.bool:
            raise fail(f"zero-point is {zp.dtype}; expected an integer dtype (int32)")
        outside = (zp < qd.qmin) | (zp > qd.qmax)
        if bool(outside.any()):
            i = first_index(outside)
            raise fail(
                f"zero-point {int(zp[i]) if i else int(zp)} at {i} lies outside [{qd.qmin}, {qd.qmax}]"
            )
        codes = scheme.quantize(x, qp)
        deq = scheme.dequantize(codes, qp)
        zeros = x == 0
        if scheme.capabilities.zero_exact and bool(zeros.any()):
            wrong = zeros & (deq != 0)
            if bool(wrong.any()):
                i = first_index(wrong)
                raise fail(
                    f"0.0 came back as {float(deq[i])!r} at index {i}; a zero range must keep 0.0 exact"
                )
        check_bound(scheme, qd, x, qp, codes, deq, g)


@conformance_check("dtype_granularity_profile")
def check_codes_and_zero_point_inside_qmin_qmax(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Codes have the dtype's code dtype and lie in [qmin, qmax]; so does every zero-point."""
    scheme, qd, kind = case_setup(subject, case)
    assert qd.qmin is not None and qd.qmax is not None
    qmin, qmax = qd.qmin, qd.qmax

    def prop(inp: QuantInput) -> None:
        x = inp.make()
        qp = scheme.compute_qparams(x, qd.name, inp.granularity)
        if qp.zero_point is not None:
            outside = (qp.zero_point < qmin) | (qp.zero_point > qmax)
            if bool(outside.any()):
                i = first_index(outside)
                zp = int(qp.zero_point[i]) if i else int(qp.zero_point)
                raise ConformanceError(
                    f"zero-point {zp} at {i} lies outside [{qmin}, {qmax}]",
                    dtype=qd.name,
                    granularity=inp.granularity,
                )
        codes = scheme.quantize(x, qp)
        if codes.dtype != qd.torch_dtype:
            raise ConformanceError(
                f"codes are {codes.dtype}; {qd.name!r} codes are {qd.torch_dtype}",
                dtype=qd.name,
                granularity=inp.granularity,
            )
        wide = codes.to(torch.int64)
        outside = (wide < qmin) | (wide > qmax)
        if bool(outside.any()):
            i = first_index(outside)
            raise ConformanceError(
                f"code {int(wide[i]) if i else int(wide)} at index {i} lies outside [{qmin}, {qmax}]",
                dtype=qd.name,
                granularity=inp.granularity,
            )

    ctx.for_each(quant_inputs(kind, float_dtypes=input_dtypes(scheme)), prop, explicit=fixed_inputs(kind, qd))


def _round_trip(subject: Subject, case: Case, ctx: CheckContext, *, max_examples: int | None = None) -> None:
    scheme, qd, kind = case_setup(subject, case)

    def prop(inp: QuantInput) -> None:
        x = inp.make()
        qp = scheme.compute_qparams(x, qd.name, inp.granularity)
        codes = scheme.quantize(x, qp)
        deq = scheme.dequantize(codes, qp)
        check_bound(scheme, qd, x, qp, codes, deq, normalized(inp.granularity, x.dim()))

    ctx.for_each(
        quant_inputs(kind, float_dtypes=input_dtypes(scheme)),
        prop,
        explicit=fixed_inputs(kind, qd),
        max_examples=max_examples,
    )


@conformance_check("dtype_granularity_profile")
def check_round_trip_error_within_half_scale(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Affine schemes: |x - dequantize(quantize(x))| <= scale/2, the dtype's grid's at most, everywhere.

    Plus float32 slack; the scale no coarser than the dtype's step (times the
    declared max_step_ratio), so a grid of fewer levels than the dtype's fails too.
    """
    if not case_scheme(subject, case).capabilities.affine:
        raise CheckSkipped(
            "non-affine scheme (affine=False): scale/2 is the affine bound; "
            "check_quantize_picks_nearest_code holds it to its own codebook"
        )
    _round_trip(subject, case, ctx)


@conformance_check("dtype_granularity_profile")
def check_quantize_picks_nearest_code(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Non-affine schemes: each value gets the code whose dequantized value is nearest."""
    scheme = case_scheme(subject, case)
    if scheme.capabilities.affine:
        raise CheckSkipped(
            "affine scheme: on a uniform grid the nearest code is the scale/2 bound, "
            "checked by check_round_trip_error_within_half_scale"
        )
    if case.dtype is not None and get_dtype(case.dtype).levels > MAX_ENUMERATED_LEVELS:
        raise CheckSkipped(
            f"{case.dtype} has more than {MAX_ENUMERATED_LEVELS} codes to enumerate per element"
        )
    # Every example dequantizes each code once: keep the count modest.
    _round_trip(subject, case, ctx, max_examples=15)


@conformance_check("dtype_granularity_profile")
def check_zero_is_exactly_representable(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Where zero_exact is claimed, every 0.0 in the input dequantizes to exactly 0.0."""
    scheme, qd, kind = case_setup(subject, case)
    if not scheme.capabilities.zero_exact:
        raise CheckSkipped("the scheme does not claim zero_exact")

    def prop(inp: QuantInput) -> None:
        x = inp.make().contiguous().clone()
        x.view(-1)[::3] = 0.0
        qp = scheme.compute_qparams(x, qd.name, inp.granularity)
        deq = scheme.dequantize(scheme.quantize(x, qp), qp)
        wrong = (x == 0) & (deq != 0)
        if bool(wrong.any()):
            i = first_index(wrong)
            raise ConformanceError(
                f"0.0 at index {i} came back as {float(deq[i])!r} (every third element set to 0.0)",
                dtype=qd.name,
                granularity=inp.granularity,
            )

    ctx.for_each(quant_inputs(kind, float_dtypes=input_dtypes(scheme)), prop, explicit=fixed_inputs(kind, qd))


@conformance_check("dtype_granularity_profile")
def check_symmetric_zero_point_rule(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Where symmetric is claimed, the zero-point is 0 (signed) or the profile's midpoint (unsigned)."""
    scheme, qd, kind = case_setup(subject, case)
    if not scheme.capabilities.symmetric:
        raise CheckSkipped("the scheme does not claim symmetric")
    assert qd.qmin is not None and qd.qmax is not None
    if qd.signed:
        want, rule = 0, "0 for a signed dtype"
    elif scheme.profile.unsigned_symmetric_zero_point == "midpoint_up":
        want, rule = (qd.qmin + qd.qmax + 1) // 2, "(qmin + qmax + 1) // 2 for an unsigned dtype"
    else:
        want, rule = (qd.qmin + qd.qmax) // 2, "(qmin + qmax) // 2 for an unsigned dtype"
    for inp in fixed_inputs(kind, qd):
        ctx.note(dtype=qd.name, granularity=inp.granularity, input=inp)
        qp = scheme.compute_qparams(inp.make(), qd.name, inp.granularity)
        assert qp.zero_point is not None
        wrong = qp.zero_point != want
        if bool(wrong.any()):
            i = first_index(wrong)
            got = int(qp.zero_point[i]) if i else int(qp.zero_point)
            raise ConformanceError(
                f"zero-point {got} at {i}; the symmetric rule gives {want} ({rule})",
                dtype=qd.name,
                granularity=inp.granularity,
                input=inp,
            )
