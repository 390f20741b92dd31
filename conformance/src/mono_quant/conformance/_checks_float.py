"""Float code checks: FP8, E2M1 and other scaled float formats, held to their own grid.

A float code dtype (``kind="float_code"``) is a sign-exponent-mantissa format
described as data; its values are not evenly spaced, so the bound on the
round-trip error is half the gap between the two representable values around
``x / scale``, which grows with the magnitude, and beyond the format's maximum a
value saturates. The bound is computed here from ``exponent_bits`` and
``mantissa_bits`` alone, independently of core's rounding code.
"""

from __future__ import annotations

import math

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import QuantInput, explicit_inputs, quant_inputs, variants
from mono_quant.conformance._oracle import (
    code_difference,
    expected_qparam_shape,
    first_index,
    normalized,
    per_element,
    reference_pack,
    scale_floor,
)
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_scheme
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, make_tensor
from mono_quant.core import (
    Granularity,
    PerTensor,
    QParams,
    QuantDtype,
    Scheme,
    dequantize,
    get_dtype,
    quantize,
    unpack,
)

__all__ = ["code_bits", "effective_scale", "format_gap"]

_NO_FLOAT = "the scheme claims no float code dtype"
#: Per-granule constants for the zero-range cases; 0.0 among them on purpose.
_CONSTANTS = (0.0, 1.5, -0.75, 2.0**-20, 1e-30, -3.0e4)


def float_setup(subject: Subject, case: Case) -> tuple[Scheme, QuantDtype, str]:
    """``(scheme, float code dtype, granularity kind)`` of a float-code case."""
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped(_NO_FLOAT)
    return case_scheme(subject, case), get_dtype(case.dtype), case.granularity


def code_bits(codes: torch.Tensor) -> torch.Tensor:
    """Codes as their stored bits (float8 tensors viewed as uint8), for exact comparisons."""
    if codes.dtype.is_floating_point and codes.element_size() == 1:
        return codes.contiguous().view(torch.uint8)
    return codes


def effective_scale(qp: QParams, shape: tuple[int, ...]) -> torch.Tensor:
    """Per element, the factor a code's value is multiplied by, in float64 (two-level formats too)."""
    assert qp.scale is not None
    s = per_element(qp.scale.detach().cpu().double(), shape, normalized(qp.granularity, len(shape)))
    t = qp.tensor_scale
    if t is None:
        return s
    return s / t if qp.rounding == "compressed-tensors" else s * t


def format_gap(y: torch.Tensor, qd: QuantDtype) -> torch.Tensor:
    """The gap between the representable values around each ``|y|`` (float64), from the format's bits.

    ``2**(floor(log2|y|) - mantissa_bits)`` among normal numbers, the subnormal step
    ``2**(1 - bias - mantissa_bits)`` below them.

    >>> from mono_quant.core import get_dtype
    >>> format_gap(torch.tensor([1.0, 3.0, 0.001], dtype=torch.float64), get_dtype("float8_e4m3fn")).tolist()
    [0.125, 0.25, 0.001953125]
    """
    assert qd.exponent_bits is not None and qd.mantissa_bits is not None
    bias = 2 ** (qd.exponent_bits - 1) - 1
    emin = 1 - bias
    a = y.abs().to(torch.float64)
    exponent = torch.frexp(a).exponent.to(torch.float64) - 1
    exponent = torch.where(a < 2.0**emin, float(emin), exponent)
    return torch.pow(2.0, exponent - qd.mantissa_bits)


def _compute_eps(scheme: Scheme, qp: QParams, x: torch.Tensor) -> float:
    """The relative rounding of ``x / scale`` before it is rounded to the format (slack of the bound)."""
    narrow = qp.rounding == "compressed-tensors" and qp.compute_dtype == "input" and qp.tensor_scale is None
    dt = x.dtype if narrow and x.dtype in (torch.float16, torch.bfloat16) else torch.float32
    return float(torch.finfo(dt).eps)


def check_float_bound(
    scheme: Scheme, qd: QuantDtype, x: torch.Tensor, qp: QParams, codes: torch.Tensor, deq: torch.Tensor
) -> None:
    """Raise where ``|x - dequantize|`` exceeds half the format's gap at ``|x / scale|`` (or saturation)."""
    assert qd.max_value is not None
    shape = tuple(x.shape)
    s = effective_scale(qp, shape)
    xd = x.detach().cpu().to(torch.float64)
    y = xd / s
    err = (xd - deq.detach().cpu().to(torch.float64)).abs()
    over = (y.abs() - qd.max_value).clamp(min=0.0)
    eps = _compute_eps(scheme, qp, x)
    allowed_y = (
        format_gap(torch.minimum(y.abs(), torch.tensor(qd.max_value)), qd) / 2 + over + 4 * eps * y.abs()
    )
    allowed = allowed_y * s + deq.detach().cpu().double().abs() * 2.0**-22 + 1e-44
    bad = ~(err <= allowed)
    if not bool(bad.any()):
        return
    i = first_index(bad)

    def at(t: torch.Tensor) -> float:
        return float(t[i]) if i else float(t)

    raise ConformanceError(
        f"round-trip error {at(err):.6g} at index {i} exceeds half the gap of {qd.name}'s values around "
        f"x / scale = {at(y):.6g} (gap {at(format_gap(y, qd)):.6g}, + saturation beyond ±{qd.max_value:g} "
        f"and float slack) = {at(allowed):.6g} (x = {at(xd)!r}, code bits "
        f"{int(code_bits(codes.detach().cpu())[i]) if i else int(code_bits(codes.detach().cpu()))}, "
        f"dequantized {at(deq.detach().cpu().double())!r}, effective scale {at(s):.6g}); "
        f"{int(bad.sum())} of {bad.numel()} elements exceed it",
        dtype=qd.name,
        granularity=qp.granularity,
    )


@conformance_check("float_code_granularity_profile")
def check_float_qparams_and_codes_have_the_contracted_shapes(
    subject: Subject, case: Case, ctx: CheckContext
) -> None:
    """Float codes: scale float32 and zero-point 0 (int32) shaped by the granularity, codes in code_dtype.

    For every axis, 1-D to 4-D; block scales of per-group granularities included.
    QParams survive to_dict/from_dict and core's quantize/dequantize give the scheme's results.
    """
    scheme, qd, kind = float_setup(subject, case)
    for rank, shape in enumerate(((8,), (4, 8), (2, 3, 8), (2, 2, 2, 8))):
        for g in variants(kind, shape):
            spec = TensorSpec(shape, torch.float32, "normal", seed=rank)
            ctx.note(dtype=qd.name, granularity=g, input=spec)
            x = spec.make()
            qp = scheme.compute_qparams(x, qd.name, g)

            def fail(detail: str, g: Granularity = g, spec: TensorSpec = spec) -> ConformanceError:
                return ConformanceError(detail, dtype=qd.name, granularity=g, input=spec)

            if qp.scale is None or qp.zero_point is None:
                raise fail("a float code dtype gave no scale or zero-point")
            want = expected_qparam_shape(shape, g)
            if tuple(qp.scale.shape) != want or qp.scale.dtype != torch.float32:
                raise fail(
                    f"scale is {qp.scale.dtype} of shape {tuple(qp.scale.shape)}; expected float32 {want}"
                )
            if tuple(qp.zero_point.shape) != want or qp.zero_point.dtype != torch.int32:
                raise fail(
                    f"zero-point is {qp.zero_point.dtype} {tuple(qp.zero_point.shape)}; expected int32 {want}"
                )
            if bool(qp.zero_point.any()):
                raise fail("a float code's zero-point must be 0 everywhere")
            codes = scheme.quantize(x, qp)
            if tuple(codes.shape) != shape or codes.dtype != qd.torch_dtype:
                raise fail(f"codes are {codes.dtype} {tuple(codes.shape)}; expected {qd.torch_dtype} {shape}")
            back = QParams.from_dict(qp.to_dict())
            if not back.equals(qp):
                raise fail("QParams.from_dict(qp.to_dict()) differs from qp")
            deq = scheme.dequantize(codes, qp)
            if differs := code_difference("values", dequantize(codes, back), deq):
                raise fail(f"core's dequantize with the qparams alone differs from the scheme's: {differs}")
            if differs := code_difference("code bits", code_bits(quantize(x, back)), code_bits(codes)):
                raise fail(f"core's quantize with the qparams alone differs from the scheme's: {differs}")


@conformance_check("float_code_granularity_profile")
def check_float_constant_granules_give_finite_scales_and_exact_zeros(
    subject: Subject, case: Case, ctx: CheckContext
) -> None:
    """Float codes: all-zero and constant tensors and granules give a finite scale > 0 and 0.0 back."""
    scheme, qd, kind = float_setup(subject, case)
    shape = (4, 8)
    for g in variants(kind, shape):
        inputs = [("torch.zeros((4, 8))", torch.zeros(shape))]
        inputs += [(f"torch.full((4, 8), {c!r})", torch.full(shape, c)) for c in _CONSTANTS[1:]]
        ones = torch.tensor(_CONSTANTS).repeat(6)[:32].reshape(shape)
        inputs.append((f"{_CONSTANTS} tiled to (4, 8)", ones))
        for where, x in inputs:
            ctx.note(dtype=qd.name, granularity=g, input=where)
            qp = scheme.compute_qparams(x, qd.name, g)
            assert qp.scale is not None
            bad = ~(torch.isfinite(qp.scale) & (qp.scale > 0))
            if bool(bad.any()):
                raise ConformanceError(
                    f"scale {qp.scale.reshape(-1)[int(bad.reshape(-1).nonzero()[0, 0])].item()!r} is not "
                    f"finite and > 0",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )
            codes = scheme.quantize(x, qp)
            deq = scheme.dequantize(codes, qp)
            wrong = (x == 0) & (deq != 0)
            if bool(wrong.any()):
                i = first_index(wrong)
                raise ConformanceError(
                    f"0.0 at {i} came back as {float(deq[i])!r}", dtype=qd.name, granularity=g, input=where
                )
            check_float_bound(scheme, qd, x, qp, codes, deq)


def _float_round_trip(scheme: Scheme, qd: QuantDtype, inp: QuantInput) -> None:
    x = inp.make()
    qp = scheme.compute_qparams(x, qd.name, inp.granularity)
    codes = scheme.quantize(x, qp)
    deq = scheme.dequantize(codes, qp)
    if not bool(torch.isfinite(deq).all()):
        i = first_index(~torch.isfinite(deq))
        raise ConformanceError(
            f"finite input gave a non-finite code at {i} (value {float(deq[i])!r}): NaN/inf encodings "
            f"must never come from finite input",
            dtype=qd.name,
            granularity=inp.granularity,
        )
    if qd.code_dtype == "uint8" and bool((codes.to(torch.int64) >= 2**qd.bits).any()):
        raise ConformanceError(
            f"codes exceed {qd.bits} bits (max {int(codes.max())})",
            dtype=qd.name,
            granularity=inp.granularity,
        )
    check_float_bound(scheme, qd, x, qp, codes, deq)


@conformance_check("float_code_granularity_profile")
def check_float_round_trip_within_half_the_format_gap(
    subject: Subject, case: Case, ctx: CheckContext
) -> None:
    """Float codes are finite for finite input and within half the format's gap at each magnitude.

    The gap between representable values grows with |x / scale| (2**(e - mantissa_bits));
    beyond ±max_value values saturate; float16/bfloat16/float64 and non-contiguous inputs too.
    """
    scheme, qd, kind = float_setup(subject, case)
    dtypes = tuple(FLOAT_DTYPES)
    ctx.for_each(
        quant_inputs(kind, float_dtypes=dtypes),
        lambda inp: _float_round_trip(scheme, qd, inp),
        explicit=explicit_inputs(kind),
    )


@conformance_check("float_code_granularity_profile")
def check_float_values_beyond_the_range_saturate(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Float codes: values beyond ±max_value * scale give ±max_value exactly, never inf, NaN or a wrap."""
    scheme, qd, kind = float_setup(subject, case)
    assert qd.max_value is not None
    for g in variants(kind, (4, 8)):
        small = make_tensor((4, 8), seed=21)
        qp = scheme.compute_qparams(small, qd.name, g)
        for factor in (4.0, 1e6, 1e30):
            where = (
                f"make_tensor((4, 8), seed=21) * {factor:g}, with the qparams of make_tensor((4, 8), seed=21)"
            )
            ctx.note(dtype=qd.name, granularity=g, input=where)
            x = small * factor
            codes = scheme.quantize(x, qp)
            deq = scheme.dequantize(codes, qp).double()
            s = effective_scale(qp, (4, 8))
            beyond = (x.double() / s).abs() > qd.max_value * (1 + 2.0**-20)
            want = torch.sign(x.double()) * qd.max_value * s
            wrong = beyond & ~((deq - want).abs() <= want.abs() * 2.0**-22)
            if bool(wrong.any()) or not bool(torch.isfinite(deq).all()):
                i = first_index(wrong | ~torch.isfinite(deq))
                raise ConformanceError(
                    f"{float(x[i])!r} is beyond the range (x / scale = {float(x.double()[i] / s[i]):g}) "
                    f"and came back as {float(deq[i])!r}; saturation gives ±max_value * scale = "
                    f"{float(want[i])!r}",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )


@conformance_check("float_code_granularity_profile")
def check_float_scale_uses_the_format_range(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Float codes: some granule above the eps floor reaches max_value/2 of the format (the range is used)."""
    scheme, qd, kind = float_setup(subject, case)
    assert qd.max_value is not None
    for i, element_kind in enumerate(("normal", "uniform", "outlier", "positive")):
        for g in variants(kind, (4, 8)):
            spec = TensorSpec(
                (4, 8), torch.float32, element_kind, seed=30 + i, magnitude=(1e-3, 1.0, 37.0)[i % 3]
            )
            ctx.note(dtype=qd.name, granularity=g, input=spec)
            x = spec.make()
            qp = scheme.compute_qparams(x, qd.name, g)
            assert qp.scale is not None
            floor = scale_floor(scheme.profile, scheme.profile.compute_dtype_for(x.dtype))
            above = per_element(qp.scale.double(), (4, 8), normalized(g, 2)) > floor * (1 + 2.0**-10)
            if not bool(above.any()):
                continue  # every scale is the profile's eps floor: the range is not the scheme's to use
            reach = float(((x.double() / effective_scale(qp, (4, 8))).abs() * above).max())
            if not reach >= qd.max_value / 2:
                raise ConformanceError(
                    f"the largest |x / scale| is {reach:g}, below half of {qd.name}'s max_value "
                    f"({qd.max_value:g}): the scales are coarser than the format needs",
                    dtype=qd.name,
                    granularity=g,
                    input=spec,
                )


@conformance_check("float_code")
def check_float_codes_pack_as_declared(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Packed float codes: quantize_tensor(pack=True) is the codes in the declared layout; unpack inverts.

    Every bit pattern of the format, odd lengths included, and the scheme's own codes.
    """
    scheme = subject.get_scheme()
    if case.dtype is None:
        raise CheckSkipped(_NO_FLOAT)
    qd = get_dtype(case.dtype)
    if qd.packing is None:
        raise CheckSkipped(f"{qd.name} codes are stored one per {qd.code_dtype} (not packed)")
    every = torch.arange(2**qd.bits, dtype=torch.int64).to(qd.torch_dtype)
    for codes in (every, every[:-1], every.reshape(2, -1)):
        where = f"every {qd.bits}-bit pattern, shape {tuple(codes.shape)}"
        ctx.note(dtype=qd.name, input=where)
        from mono_quant.core import pack

        packed = pack(codes, qd)
        if differs := code_difference("packed containers", packed, reference_pack(codes, qd.packing)):
            raise ConformanceError(
                f"pack does not follow {qd.packing}: {differs}", dtype=qd.name, input=where
            )
        if differs := code_difference("codes", unpack(packed, qd, tuple(codes.shape)), codes):
            raise ConformanceError(
                f"unpack(pack(codes)) is not the codes: {differs}", dtype=qd.name, input=where
            )
    x = make_tensor((3, 64), seed=13)
    g = scheme.capabilities.default_granularity
    ctx.note(dtype=qd.name, granularity=g, input="make_tensor((3, 64), seed=13)")
    codes, qp = scheme.quantize_tensor(x, qd.name, g)
    one_call, _ = scheme.quantize_tensor(x, qd.name, g, pack=True)
    if differs := code_difference("packed containers", one_call, reference_pack(codes, qd.packing)):
        raise ConformanceError(
            f"quantize_tensor(..., pack=True) is not its codes packed as {qd.packing} says: {differs}",
            dtype=qd.name,
            granularity=g,
            input="make_tensor((3, 64), seed=13)",
        )
    if differs := code_difference("values", dequantize(one_call, qp, shape=(3, 64)), dequantize(codes, qp)):
        raise ConformanceError(
            f"dequantize(packed, qp, shape=...) differs from dequantize(codes, qp): {differs}",
            dtype=qd.name,
            granularity=g,
        )


@conformance_check("float_code")
def check_float_zero_dim_input_per_tensor(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Float codes: a 0-d input works per-tensor, with 0-d qparams, codes and values within the bound."""
    scheme = subject.get_scheme()
    if case.dtype is None:
        raise CheckSkipped(_NO_FLOAT)
    if "per_tensor" not in scheme.capabilities.granularities:
        raise CheckSkipped("0-d input needs per_tensor, which the scheme does not claim")
    qd = get_dtype(case.dtype)
    for value in (0.0, 1.5, -2.25, 3e-4, 1e30):
        where = f"torch.tensor({value!r})"
        ctx.note(dtype=qd.name, granularity=PerTensor(), input=where)
        x = torch.tensor(value)
        qp = scheme.compute_qparams(x, qd.name, PerTensor())
        codes = scheme.quantize(x, qp)
        deq = scheme.dequantize(codes, qp)
        if qp.scale is None or qp.scale.shape != () or codes.shape != () or deq.shape != ():
            raise ConformanceError(
                "0-d input must give 0-d qparams, codes and values", dtype=qd.name, input=where
            )
        if value != 0 and not math.isfinite(float(deq)):
            raise ConformanceError(f"{value!r} came back as {float(deq)!r}", dtype=qd.name, input=where)
        check_float_bound(scheme, qd, x, qp, codes, deq)
