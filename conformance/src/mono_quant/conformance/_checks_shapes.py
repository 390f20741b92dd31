"""Shape checks: qparams, codes and values have the contracted shapes and dtypes."""

from __future__ import annotations

import math

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._oracle import (
    check_bound,
    code_difference,
    expected_qparam_shape,
    gran_text,
    normalized,
)
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec
from mono_quant.core import (
    Granularity,
    MonoQuantError,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    get_dtype,
)

__all__: list[str] = []

#: One shape per rank, 1-D to 4-D, with sizes that have a divisor below themselves.
SHAPES: tuple[tuple[int, ...], ...] = ((6,), (4, 6), (2, 3, 4), (2, 3, 2, 4))

_BITS = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def every_granularity(kind: str, shape: tuple[int, ...]) -> list[Granularity]:
    """Every axis of ``shape`` (negative ones too) for ``kind``, two group sizes per axis.

    >>> [g.axis for g in every_granularity("per_channel", (2, 3))]
    [-2, -1, 0, 1]
    >>> [(g.axis, g.group_size) for g in every_granularity("per_group", (6,))]
    [(-1, 2), (-1, 6), (0, 2), (0, 6)]
    """
    ndim = len(shape)
    if kind == "per_tensor":
        return [PerTensor()]
    out: list[Granularity] = []
    for axis in range(-ndim, ndim):
        if kind == "per_channel":
            out.append(PerChannel(axis))
            continue
        size = shape[axis]
        smallest = next((d for d in range(2, size) if size % d == 0), size)
        out += [PerGroup(axis, gs) for gs in sorted({smallest, size})]
    return out


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (so -0.0 differs from 0.0 and NaN equals the same NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in _BITS:
        return torch.equal(a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype]))
    return torch.equal(a, b)


@conformance_check("dtype_granularity")
def check_qparam_shapes_and_dtypes(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Scale and zero-point have the contracted shape and dtype for every axis, 1-D to 4-D.

    Scale is float32 and zero-point int32; codes have the input's shape and the
    dtype's code dtype; dequantized values come back in the dtype asked for.
    """
    scheme = subject.get_scheme()
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped(
            "the scheme claims no registered integer dtype (float codes: the check_float_* checks)"
        )
    qd = get_dtype(case.dtype)
    for rank, shape in enumerate(SHAPES):
        for g in every_granularity(case.granularity, shape):
            spec = TensorSpec(shape, torch.float32, "normal", seed=rank)
            ctx.note(dtype=qd.name, granularity=g, input=spec)
            x = spec.make()

            def fail(detail: str, g: Granularity = g, spec: TensorSpec = spec) -> ConformanceError:
                return ConformanceError(detail, dtype=qd.name, granularity=g, input=spec)

            qp = scheme.compute_qparams(x, qd.name, g)
            if qp.scale is None or qp.zero_point is None:
                raise fail("integer dtype gave qparams without scale or zero-point")
            want = expected_qparam_shape(shape, g)
            for what, t, dtype in (
                ("scale", qp.scale, torch.float32),
                ("zero_point", qp.zero_point, torch.int32),
            ):
                if tuple(t.shape) != want:
                    raise fail(
                        f"{what} has shape {tuple(t.shape)} for {gran_text(g)} on input shape {shape}; "
                        f"expected {want}"
                    )
                if t.dtype != dtype:
                    raise fail(f"{what} is {t.dtype}; expected {dtype}")
            if qp.granularity != normalized(g, len(shape)):
                raise fail(
                    f"qparams record {gran_text(qp.granularity)}; expected the normalized "
                    f"{gran_text(normalized(g, len(shape)))}"
                )
            codes = scheme.quantize(x, qp)
            if tuple(codes.shape) != shape or codes.dtype != qd.torch_dtype:
                raise fail(
                    f"codes are {codes.dtype} of shape {tuple(codes.shape)}; expected {qd.torch_dtype} "
                    f"of shape {shape}"
                )
            for out_dtype in (torch.float32, torch.float16):
                deq = scheme.dequantize(codes, qp, dtype=out_dtype)
                if tuple(deq.shape) != shape or deq.dtype != out_dtype:
                    raise fail(
                        f"dequantize(..., dtype={out_dtype}) gave {deq.dtype} of shape {tuple(deq.shape)}"
                    )


@conformance_check("float_target")
def check_float_targets_are_a_plain_cast(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """float16/bfloat16 targets: no qparams, quantize is x.to(target), dequantize a cast back.

    Values the cast cannot hold (NaN, or beyond the target's range) must not slip
    through as garbage: NaN raises NonFiniteError, an overflow raises a
    mono-quant error or gives exactly what the cast gives.
    """
    scheme = subject.get_scheme()
    assert case.dtype is not None
    qd = get_dtype(case.dtype)
    target = qd.torch_dtype
    grans: list[Granularity | None] = [None, PerTensor()]
    if "per_channel" in scheme.capabilities.granularities:
        grans.append(PerChannel(0))
    for i, (name, dt) in enumerate(FLOAT_DTYPES.items()):
        for spec in (
            TensorSpec((4, 8), dt, ("outlier", "normal", "ties", "uniform")[i], seed=i, magnitude=37.0),
            TensorSpec((4, 8), dt, ("tiny", "subnormal")[i % 2], seed=i),
        ):
            x = spec.make()
            for g in grans:
                ctx.note(dtype=qd.name, granularity=g, input=spec)
                qp = scheme.compute_qparams(x, qd.name, g)
                label = gran_text(g) if g is not None else "the default granularity"

                def fail(
                    detail: str, label: str = label, spec: TensorSpec = spec, name: str = name
                ) -> ConformanceError:
                    return ConformanceError(f"{detail} ({name} input, {label})", dtype=qd.name, input=spec)

                if qp.scale is not None or qp.zero_point is not None:
                    raise fail(
                        f"float target {qd.name!r} must be a plain cast with no qparams; got scale "
                        f"{qp.scale!r} and zero-point {qp.zero_point!r}"
                    )
                if qp.dtype != qd.name:
                    raise fail(f"qparams are for dtype {qp.dtype!r}")
                codes = scheme.quantize(x, qp)
                if differs := code_difference("values", codes, x.to(target)):
                    raise fail(f"quantize is not x.to({target}): {differs}")
                deq = scheme.dequantize(codes, qp)
                if differs := code_difference("values", deq, codes.to(torch.float32)):
                    raise fail(f"dequantize is not codes.to(torch.float32): {differs}")
    qp = scheme.compute_qparams(torch.ones(4), qd.name)
    nan = torch.tensor([1.0, math.nan, 2.0])
    ctx.note(dtype=qd.name, input="torch.tensor([1.0, nan, 2.0])")
    try:
        got = scheme.quantize(nan, qp)
    except NonFiniteError:
        pass
    else:
        raise ConformanceError(
            f"NaN input to the {qd.name} cast gave {got.tolist()}; the nonfinite 'raise' policy means "
            f"mono_quant.core.NonFiniteError",
            dtype=qd.name,
            input="torch.tensor([1.0, nan, 2.0])",
        )
    big = torch.tensor([1.0, 1e30, -2.0], dtype=torch.float64)
    if float(big.abs().max()) > torch.finfo(target).max:
        where = "torch.tensor([1.0, 1e30, -2.0], dtype=torch.float64)"
        ctx.note(dtype=qd.name, input=where)
        try:
            got = scheme.quantize(big, qp)
        except MonoQuantError:
            return
        if not bits_equal(got, big.to(target)):
            raise ConformanceError(
                f"a value beyond {qd.name}'s range gave {got.tolist()}: raise a mono-quant error "
                f"(core's CastOverflowError) or give exactly the cast",
                dtype=qd.name,
                input=where,
            )


@conformance_check("dtype")
def check_zero_dim_input_per_tensor(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """A 0-d input works per-tensor and is refused per-channel/per-group.

    Per-tensor, qparams, codes and values are 0-d and meet the error bound; per
    channel or group it raises a mono-quant error, not a crash.
    """
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    if case.dtype is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    if "per_tensor" not in caps.granularities:
        raise CheckSkipped("0-d input needs per_tensor, which the scheme does not claim")
    for value in (0.0, 1.5, -2.25, 3e-4):
        x = torch.tensor(value)
        where = f"torch.tensor({value!r})"
        ctx.note(dtype=qd.name, granularity=PerTensor(), input=where)
        qp = scheme.compute_qparams(x, qd.name, PerTensor())
        if qp.scale is None or qp.scale.shape != () or qp.zero_point is None or qp.zero_point.shape != ():
            raise ConformanceError("0-d input must give 0-d scale and zero-point", dtype=qd.name, input=where)
        codes = scheme.quantize(x, qp)
        deq = scheme.dequantize(codes, qp)
        if codes.shape != () or deq.shape != ():
            raise ConformanceError(
                f"0-d input gave codes of shape {tuple(codes.shape)} and values of shape {tuple(deq.shape)}",
                dtype=qd.name,
                input=where,
            )
        try:
            check_bound(scheme, qd, x, qp, codes, deq, PerTensor())
        except ConformanceError as exc:
            exc.input = where
            raise
    for kind, g in (("per_channel", PerChannel(0)), ("per_group", PerGroup(0, 1))):
        if kind not in caps.granularities:
            continue
        try:
            scheme.compute_qparams(torch.tensor(1.0), qd.name, g)
        except MonoQuantError:
            continue
        except Exception as exc:
            raise ConformanceError(
                f"{gran_text(g)} on a 0-d input crashed with {type(exc).__name__}: {exc}; expected a "
                f"mono-quant error",
                dtype=qd.name,
                granularity=g,
                input="torch.tensor(1.0)",
            ) from exc
        raise ConformanceError(
            f"{gran_text(g)} on a 0-d input was accepted; a 0-d tensor has no axis",
            dtype=qd.name,
            granularity=g,
            input="torch.tensor(1.0)",
        )
