"""Path checks: the one-call path (and the checkpoint path through it) equals the two-step one."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._checks_values import input_dtypes
from mono_quant.conformance._inputs import FixedTensor, QuantInput, fixed_inputs, quant_inputs, variants
from mono_quant.conformance._oracle import code_difference
from mono_quant.conformance._results import ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_setup
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, make_tensor
from mono_quant.core import Granularity, QParams, QuantDtype, Scheme, dequantize, pack, quantize_with_error

__all__: list[str] = []

_F32_MAX = float(torch.finfo(torch.float32).max)


def _energies(x: torch.Tensor, deq: torch.Tensor) -> tuple[float, float]:
    a = x.detach().to(torch.float32).double()
    d = a - deq.detach().double()
    return float((a * a).sum()), float((d * d).sum())


Outcome = tuple[torch.Tensor, QParams] | BaseException


def _outcome(call: Callable[[], tuple[torch.Tensor, QParams]]) -> Outcome:
    """``call()``'s codes and qparams, or the exception it raised."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - which error each path raises is what is compared
        return exc


def _two_steps(scheme: Scheme, x: torch.Tensor, dtype: str, g: Granularity) -> Outcome:
    def both() -> tuple[torch.Tensor, QParams]:
        qp = scheme.compute_qparams(x, dtype, g)
        return scheme.quantize(x, qp), qp

    return _outcome(both)


def _one_path_inputs(kind: str, qd: QuantDtype) -> list[QuantInput]:
    """The fixed inputs every value check runs, odd sizes with a size-1 axis, and non-finite ones."""
    out = fixed_inputs(kind, qd)
    for shape in ((1, 7), (5, 3, 1), (9,)):
        out += [QuantInput(TensorSpec(shape, seed=len(shape)), g) for g in variants(kind, shape)[:2]]
    bad = make_tensor((4, 6), seed=2)
    bad[1, 2] = math.nan
    for g in variants(kind, (4, 6)):
        out.append(QuantInput(FixedTensor(bad, "make_tensor((4, 6), seed=2) with nan at (1, 2)"), g))
    return out


def _said(outcome: Outcome) -> str:
    if isinstance(outcome, BaseException):
        return f"raised {type(outcome).__name__}: {outcome}"
    return "returned codes and qparams"


@conformance_check("dtype_granularity")
def check_quantize_tensor_matches_two_steps(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """quantize_tensor and core's quantize_with_error give what compute_qparams then quantize give.

    On the inputs every value check runs (ties, odd sizes, zeros) and drawn ones,
    packed or not; on non-finite input both paths raise the same error.
    """
    scheme, qd, kind = case_setup(subject, case)

    def prop(inp: QuantInput) -> None:
        x = inp.make()
        g = inp.granularity
        two = _two_steps(scheme, x, qd.name, g)
        paths: dict[str, Callable[[], tuple[torch.Tensor, QParams]]] = {
            "quantize_tensor(..., pack=False)": lambda: scheme.quantize_tensor(x, qd.name, g),
            "quantize_tensor(..., pack=True)": lambda: scheme.quantize_tensor(x, qd.name, g, pack=True),
            "mono_quant.core.quantize_with_error (the checkpoint path)": lambda: quantize_with_error(
                scheme, x, qd.name, g
            )[:2],
        }
        for path, call in paths.items():
            one = _outcome(call)
            if isinstance(two, BaseException) or isinstance(one, BaseException):
                if type(one) is not type(two):
                    raise ConformanceError(
                        f"{path} {_said(one)}, but compute_qparams then quantize {_said(two)}",
                        dtype=qd.name,
                        granularity=g,
                    )
                continue
            (got_codes, got_qp), (codes, qp) = one, two
            if not got_qp.equals(qp):
                raise ConformanceError(
                    f"{path} gives other qparams than compute_qparams: {got_qp!r} vs {qp!r}",
                    dtype=qd.name,
                    granularity=g,
                )
            packed = "pack=True" in path
            differs = code_difference("codes", got_codes, pack(codes, qd) if packed else codes)
            if differs:
                raise ConformanceError(
                    f"{path} differs from compute_qparams then quantize{' then pack' if packed else ''}: "
                    f"{differs}",
                    dtype=qd.name,
                    granularity=g,
                )
        if isinstance(two, BaseException):
            return
        codes, qp = two
        signal, noise = quantize_with_error(scheme, x, qd.name, g)[2]
        ref_signal, ref_noise = _energies(x, scheme.dequantize(codes, qp))
        if ref_signal > _F32_MAX and not math.isfinite(signal):
            return  # float32 dot products overflow beyond float32 (the CLI refuses those tensors)
        close = math.isclose(signal, ref_signal, rel_tol=1e-5, abs_tol=1e-30)
        if not (close and abs(noise - ref_noise) <= 1e-4 * ref_signal + 1e-30):
            raise ConformanceError(
                f"quantize_with_error reports signal {signal!r} and noise {noise!r}; the codes give "
                f"{ref_signal!r} and {ref_noise!r} (sums of x**2 and (x - dequantize(codes))**2)",
                dtype=qd.name,
                granularity=g,
            )

    explicit = _one_path_inputs(kind, qd)
    ctx.for_each(quant_inputs(kind, float_dtypes=input_dtypes(scheme)), prop, explicit=explicit)


@conformance_check("dtype_granularity")
def check_dequantize_to_each_float_dtype_is_a_cast(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """dequantize(q, qp, dtype=d) equals dequantize(q, qp).to(d) bit for bit, for every float dtype d.

    For affine qparams also core's dequantize(q, qp, dtype=d): values, not only the dtype.
    """
    scheme, qd, kind = case_setup(subject, case)
    for inp in fixed_inputs(kind, qd)[::2]:
        ctx.note(dtype=qd.name, granularity=inp.granularity, input=inp)
        x = inp.make() * 3.7  # values that float16 and bfloat16 round
        qp = scheme.compute_qparams(x, qd.name, inp.granularity)
        codes = scheme.quantize(x, qp)
        base = scheme.dequantize(codes, qp)
        for name, dt in FLOAT_DTYPES.items():
            wants = [("scheme.dequantize(q, qp).to(d)", base.to(dt))]
            if qp.affine:
                wants.append(("mono_quant.core.dequantize(q, qp, dtype=d)", dequantize(codes, qp, dtype=dt)))
            got = scheme.dequantize(codes, qp, dtype=dt)
            for what, want in wants:
                differs = code_difference("values", got, want)
                if differs:
                    raise ConformanceError(
                        f"scheme.dequantize(q, qp, dtype=torch.{name}) differs from {what}: {differs}",
                        dtype=qd.name,
                        granularity=inp.granularity,
                        input=inp,
                    )
