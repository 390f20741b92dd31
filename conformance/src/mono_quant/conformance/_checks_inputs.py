"""Input checks: float dtypes, memory layouts, no mutation, determinism, device."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._checks_shapes import bits_equal
from mono_quant.conformance._oracle import QuantInput, check_bound, explicit_inputs, normalized, variants
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, make_tensor
from mono_quant.core import Granularity, QParams, QuantDtype, Scheme, get_dtype

__all__: list[str] = []


def _setup(subject: Subject, case: Case) -> tuple[Scheme, QuantDtype, str]:
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    return subject.get_scheme(), get_dtype(case.dtype), case.granularity


def _outputs(
    scheme: Scheme, qd: QuantDtype, x: torch.Tensor, g: Granularity
) -> tuple[QParams, torch.Tensor, torch.Tensor]:
    qp = scheme.compute_qparams(x, qd.name, g)
    codes = scheme.quantize(x, qp)
    return qp, codes, scheme.dequantize(codes, qp)


def _same(
    a: tuple[QParams, torch.Tensor, torch.Tensor], b: tuple[QParams, torch.Tensor, torch.Tensor]
) -> str | None:
    """What differs between two (qparams, codes, values) triples, or ``None``."""
    qa, ca, da = a
    qb, cb, db = b
    for what, ta, tb in (("scale", qa.scale, qb.scale), ("zero-point", qa.zero_point, qb.zero_point)):
        if (ta is None) != (tb is None) or (
            ta is not None and tb is not None and not bits_equal(ta.cpu(), tb.cpu())
        ):
            return what
    if not bits_equal(ca.cpu(), cb.cpu()):
        return "codes"
    if not bits_equal(da.cpu(), db.cpu()):
        return "dequantized values"
    return None


@conformance_check("dtype_granularity")
def check_float_input_dtypes_are_accepted(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """float32, float16, bfloat16 and float64 inputs work and meet the error bound.

    Under a float32 compute profile they also give the same qparams and codes as
    the same values converted to float32.
    """
    scheme, qd, kind = _setup(subject, case)
    for i, (name, dt) in enumerate(FLOAT_DTYPES.items()):
        for g in variants(kind, (4, 8)):
            spec = TensorSpec((4, 8), dt, ("normal", "outlier", "ties", "positive")[i], seed=i, magnitude=3.0)
            ctx.note(dtype=qd.name, granularity=g, input=spec)
            x = spec.make()
            qp, codes, deq = _outputs(scheme, qd, x, g)
            try:
                check_bound(scheme, qd, x, qp, codes, deq, normalized(g, 2))
            except ConformanceError as exc:
                exc.input = spec
                raise
            back = scheme.dequantize(codes, qp, dtype=dt)
            if back.dtype != dt:
                raise ConformanceError(
                    f"dequantize(..., dtype={dt}) returned {back.dtype}",
                    dtype=qd.name,
                    granularity=g,
                    input=spec,
                )
            if scheme.profile.compute_dtype == "float32" and dt != torch.float32:
                differs = _same((qp, codes, deq), _outputs(scheme, qd, x.float(), g))
                if differs:
                    raise ConformanceError(
                        f"{name} input gives different {differs} than the same values as float32; the "
                        f"profile {scheme.profile.name!r} computes in float32 whatever the input dtype",
                        dtype=qd.name,
                        granularity=g,
                        input=spec,
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
    scheme, qd, kind = _setup(subject, case)
    for where, build, g in _layouts(kind):
        ctx.note(dtype=qd.name, granularity=g, input=where)
        x = build()
        differs = _same(_outputs(scheme, qd, x, g), _outputs(scheme, qd, x.contiguous(), g))
        if differs:
            raise ConformanceError(
                f"a non-contiguous input gives different {differs} than its contiguous copy",
                dtype=qd.name,
                granularity=g,
                input=where,
            )


def _snapshot(t: torch.Tensor) -> tuple[torch.Tensor, int, tuple[int, ...]]:
    return t.detach().clone(), t._version, tuple(t.stride())


def _changed(t: torch.Tensor, snap: tuple[torch.Tensor, int, tuple[int, ...]]) -> str | None:
    copy_, version, stride = snap
    if not bits_equal(t, copy_):
        i = (t != copy_).nonzero()
        where = tuple(int(v) for v in i[0]) if len(i) else "?"
        return f"its values changed (first at index {where})"
    if t._version != version:
        return f"it was written in place (version counter {version} -> {t._version}), values unchanged"
    if tuple(t.stride()) != stride:
        return "its strides changed"
    return None


@conformance_check("dtype_granularity")
def check_input_is_not_mutated(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """compute_qparams, quantize and dequantize never write to their inputs (x, codes, qparams)."""
    scheme, qd, kind = _setup(subject, case)
    inputs: list[QuantInput] = explicit_inputs(kind)[:4] + explicit_inputs(kind)[-1:]
    for inp in inputs:
        ctx.note(dtype=qd.name, granularity=inp.granularity, input=inp)

        def fail(step: str, what: str, inp: QuantInput = inp) -> ConformanceError:
            return ConformanceError(
                f"{step} modified {what}", dtype=qd.name, granularity=inp.granularity, input=inp
            )

        x = inp.make()
        snap = _snapshot(x)
        qp = scheme.compute_qparams(x, qd.name, inp.granularity)
        if changed := _changed(x, snap):
            raise fail("compute_qparams", f"the input tensor: {changed}")
        qsnaps = [
            (n, t, _snapshot(t))
            for n, t in (("scale", qp.scale), ("zero-point", qp.zero_point))
            if t is not None
        ]
        codes = scheme.quantize(x, qp)
        if changed := _changed(x, snap):
            raise fail("quantize", f"the input tensor: {changed}")
        csnap = _snapshot(codes)
        scheme.dequantize(codes, qp)
        if changed := _changed(codes, csnap):
            raise fail("dequantize", f"the codes: {changed}")
        for name, t, s in qsnaps:
            if changed := _changed(t, s):
                raise fail("quantize/dequantize", f"the qparams' {name}: {changed}")


@conformance_check("dtype_granularity")
def check_same_input_gives_identical_output(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """The same input twice, or through a copy of the scheme, gives bit-identical results."""
    scheme, qd, kind = _setup(subject, case)
    twin = copy.deepcopy(scheme)
    for inp in explicit_inputs(kind):
        ctx.note(dtype=qd.name, granularity=inp.granularity, input=inp)
        x = inp.make()
        first = _outputs(scheme, qd, x, inp.granularity)
        for label, other in (("a second call", scheme), ("a copy of the scheme", twin)):
            differs = _same(first, _outputs(other, qd, x.clone(), inp.granularity))
            if differs:
                raise ConformanceError(
                    f"{label} on the same input gives different {differs}",
                    dtype=qd.name,
                    granularity=inp.granularity,
                    input=inp,
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
    scheme, qd, kind = _setup(subject, case)
    for g in variants(kind, (4, 8)):
        spec = TensorSpec((4, 8), torch.float32, "normal", seed=12)
        ctx.note(dtype=qd.name, granularity=g, input=spec)
        for device in _devices():
            x = spec.make().to(device)
            qp, codes, deq = _outputs(scheme, qd, x, g)
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
