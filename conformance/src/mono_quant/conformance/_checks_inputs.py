"""Input checks: float dtypes, memory layouts, device."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import (
    FixedTensor,
    QuantInput,
    adversarial_inputs,
    explicit_inputs,
    variants,
)
from mono_quant.conformance._oracle import check_bound, code_difference, normalized
from mono_quant.conformance._results import ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_setup
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, make_tensor
from mono_quant.core import Granularity, QParams, QuantDtype, Scheme

__all__ = ["outputs", "same_outputs"]

Outputs = tuple[QParams, torch.Tensor, torch.Tensor]


def outputs(scheme: Scheme, qd: QuantDtype, x: torch.Tensor, g: Granularity) -> Outputs:
    """``(qparams, codes, dequantized values)`` of ``x`` through the two-step path."""
    qp = scheme.compute_qparams(x, qd.name, g)
    codes = scheme.quantize(x, qp)
    return qp, codes, scheme.dequantize(codes, qp)


def same_outputs(a: Outputs, b: Outputs) -> str | None:
    """What differs between two (qparams, codes, values) triples, said precisely, or ``None``."""
    qa, ca, da = a
    qb, cb, db = b
    for what, ta, tb in (("scales", qa.scale, qb.scale), ("zero-points", qa.zero_point, qb.zero_point)):
        if (ta is None) != (tb is None):
            return f"{what}: one is None"
        if ta is not None and tb is not None and (differs := code_difference(what, ta, tb)):
            return differs
    return code_difference("codes", ca, cb) or code_difference("dequantized values", da, db)


def _float_inputs(kind: str, qd: QuantDtype, dt: torch.dtype, i: int) -> list[QuantInput]:
    """Ordinary inputs made in ``dt``, and the dtype's adversarial ones cast to ``dt`` where it holds them."""
    out = [
        QuantInput(
            TensorSpec((4, 8), dt, ("normal", "outlier", "ties", "positive")[i], seed=i, magnitude=3.0), g
        )
        for g in variants(kind, (4, 8))
    ]
    for inp in explicit_inputs(kind, dtype=dt) + adversarial_inputs(kind, qd):
        x = inp.make()
        if x.dtype != dt:
            if not bool(torch.isfinite(x.to(dt)).all()):
                continue  # beyond what dt holds: a cast, not the scheme, would make it inf
            label = str(inp.spec).split(" = ", 1)[0]
            inp = QuantInput(FixedTensor(x.to(dt), f"{label}, cast to {dt}"), inp.granularity)
        out.append(inp)
    return out


@conformance_check("dtype_granularity")
def check_float_input_dtypes_are_accepted(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """float32, float16, bfloat16 and float64 inputs work and meet the error bound.

    On every fixed input in each dtype. Under a float32 compute profile they also
    give the same qparams and codes as the same values converted to float32.
    """
    scheme, qd, kind = case_setup(subject, case)
    for i, (name, dt) in enumerate(FLOAT_DTYPES.items()):
        for inp in _float_inputs(kind, qd, dt, i):
            g = inp.granularity
            ctx.note(dtype=qd.name, granularity=g, input=inp)
            x = inp.make()
            qp, codes, deq = outputs(scheme, qd, x, g)
            try:
                check_bound(scheme, qd, x, qp, codes, deq, normalized(g, x.dim()))
            except ConformanceError as exc:
                exc.input = inp
                raise
            back = scheme.dequantize(codes, qp, dtype=dt)
            if back.dtype != dt:
                raise ConformanceError(
                    f"dequantize(..., dtype={dt}) returned {back.dtype}",
                    dtype=qd.name,
                    granularity=g,
                    input=inp,
                )
            if scheme.profile.compute_dtype == "float32" and dt != torch.float32:
                differs = same_outputs((qp, codes, deq), outputs(scheme, qd, x.float(), g))
                if differs:
                    raise ConformanceError(
                        f"{name} input gives other results than the same values as float32 ({differs}); the "
                        f"profile {scheme.profile.name!r} computes in float32 whatever the input dtype",
                        dtype=qd.name,
                        granularity=g,
                        input=inp,
                    )


def _layouts(kind: str) -> list[tuple[str, Callable[[], torch.Tensor], Granularity]]:
    out: list[tuple[str, Callable[[], torch.Tensor], Granularity]] = []
    for g in variants(kind, (4, 8)):
        out.append(
            (
                "make_tensor((4, 8), noncontiguous=True)",
                lambda: make_tensor((4, 8), seed=7, noncontiguous=True),
                g,
            )
        )
        out.append(("make_tensor((8, 4)).t()", lambda: make_tensor((8, 4), kind="uniform", seed=8).t(), g))
    for g in variants(kind, (2, 3, 4)):
        out.append(
            (
                "make_tensor((4, 2, 3)).permute(1, 2, 0)",
                lambda: make_tensor((4, 2, 3), seed=9).permute(1, 2, 0),
                g,
            )
        )
    return out


@conformance_check("dtype_granularity")
def check_noncontiguous_input_matches_contiguous(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Strided, transposed and permuted inputs give bit-identical results to their contiguous copies."""
    scheme, qd, kind = case_setup(subject, case)
    for where, build, g in _layouts(kind):
        ctx.note(dtype=qd.name, granularity=g, input=where)
        x = build()
        differs = same_outputs(outputs(scheme, qd, x, g), outputs(scheme, qd, x.contiguous(), g))
        if differs:
            raise ConformanceError(
                f"a non-contiguous input gives other results than its contiguous copy: {differs}",
                dtype=qd.name,
                granularity=g,
                input=where,
            )


def _devices() -> list[torch.device]:
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(torch.device("mps"))
    return out


@conformance_check("dtype_granularity")
def check_output_on_input_device(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Qparams, codes and values land on the input's device, for every device available here."""
    scheme, qd, kind = case_setup(subject, case)
    for g in variants(kind, (4, 8)):
        spec = TensorSpec((4, 8), torch.float32, "normal", seed=12)
        ctx.note(dtype=qd.name, granularity=g, input=spec)
        for device in _devices():
            x = spec.make().to(device)
            qp, codes, deq = outputs(scheme, qd, x, g)
            for what, t in (
                ("scale", qp.scale),
                ("zero-point", qp.zero_point),
                ("codes", codes),
                ("values", deq),
            ):
                if t is not None and t.device.type != device.type:
                    raise ConformanceError(
                        f"{what} is on {t.device}, the input on {device}",
                        dtype=qd.name,
                        granularity=g,
                        input=spec,
                    )
