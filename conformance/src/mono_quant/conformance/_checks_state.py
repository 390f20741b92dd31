"""State checks: inputs are never written to, and results depend on nothing but the inputs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._checks_inputs import outputs, same_outputs
from mono_quant.conformance._checks_shapes import bits_equal
from mono_quant.conformance._inputs import explicit_inputs, variants
from mono_quant.conformance._oracle import code_difference
from mono_quant.conformance._results import ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance._variants import case_setup
from mono_quant.conformance.strategies import FLOAT_DTYPES, TensorSpec, make_tensor
from mono_quant.core import (
    Granularity,
    MonoQuantError,
    QParams,
    QuantDtype,
    Scheme,
    get_dtype,
    get_scheme,
    quantize_with_error,
)

__all__: list[str] = []


@dataclass(frozen=True)
class _Snapshot:
    values: torch.Tensor
    version: int
    stride: tuple[int, ...]

    @classmethod
    def of(cls, t: torch.Tensor) -> _Snapshot:
        return cls(t.detach().clone(), t._version, tuple(t.stride()))

    def changes(self, t: torch.Tensor) -> str | None:
        """How ``t`` changed since the snapshot, or ``None``."""
        if not bits_equal(t.detach(), self.values):
            return f"its values changed: {code_difference('values', t, self.values)}"
        if t._version != self.version:
            return (
                f"it was written in place (version counter {self.version} -> {t._version}) even though "
                f"its values are unchanged"
            )
        if tuple(t.stride()) != self.stride:
            return f"its strides changed from {self.stride} to {tuple(t.stride())}"
        return None


def _layouts(dt: torch.dtype, seed: int) -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """The same kind of input contiguous, strided and transposed, in ``dt``."""
    return [
        (f"make_tensor((4, 8), {dt}, seed={seed})", lambda: make_tensor((4, 8), dt, seed=seed)),
        (
            f"make_tensor((4, 8), {dt}, seed={seed}, noncontiguous=True)",
            lambda: make_tensor((4, 8), dt, seed=seed, noncontiguous=True),
        ),
        (f"make_tensor((8, 4), {dt}, seed={seed}).t()", lambda: make_tensor((8, 4), dt, seed=seed).t()),
    ]


EntryPoint = Callable[[Scheme, torch.Tensor, QuantDtype, Granularity], object]

#: Every way a tensor enters a scheme: the two steps, the one call (packed or not), the checkpoint path.
_ENTRY_POINTS: dict[str, EntryPoint] = {
    "compute_qparams": lambda s, x, qd, g: s.compute_qparams(x, qd.name, g),
    "quantize": lambda s, x, qd, g: s.quantize(x, s.compute_qparams(x.detach().clone(), qd.name, g)),
    "quantize_tensor(..., pack=False)": lambda s, x, qd, g: s.quantize_tensor(x, qd.name, g),
    "quantize_tensor(..., pack=True)": lambda s, x, qd, g: s.quantize_tensor(x, qd.name, g, pack=True),
    "mono_quant.core.quantize_with_error": lambda s, x, qd, g: quantize_with_error(s, x, qd.name, g),
}


def _fail(qd: QuantDtype, g: Granularity, where: str, detail: str) -> ConformanceError:
    return ConformanceError(detail, dtype=qd.name, granularity=g, input=where)


@conformance_check("dtype_granularity")
def check_input_is_not_mutated(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """No entry point writes to its inputs, for every float dtype and layout; Parameters work.

    compute_qparams, quantize, quantize_tensor (packed or not), core's
    quantize_with_error and dequantize leave x, the codes and the qparams as they
    were: values, strides and version counter (an in-place write of the same
    values counts). An nn.Parameter with requires_grad=True gives the results of
    its values.
    """
    scheme, qd, kind = case_setup(subject, case)
    granularities = variants(kind, (4, 8))
    for i, (name, dt) in enumerate(FLOAT_DTYPES.items()):
        for j, (where, build) in enumerate(_layouts(dt, seed=40 + i)):
            g = granularities[(i + j) % len(granularities)]
            ctx.note(dtype=qd.name, granularity=g, input=where)
            for step, enter in _ENTRY_POINTS.items():
                x = build()
                snap = _Snapshot.of(x)
                enter(scheme, x, qd, g)
                if changed := snap.changes(x):
                    raise _fail(qd, g, where, f"{step} modified the {name} input tensor: {changed}")
            x = build()
            qp = scheme.compute_qparams(x, qd.name, g)
            codes = scheme.quantize(x, qp)
            kept = [("the codes", codes, _Snapshot.of(codes))]
            kept += [(f"the qparams' {n}", t, _Snapshot.of(t)) for n, t in qp.tensors().items()]
            scheme.dequantize(codes, qp, dtype=dt)
            for what, t, snap in kept:
                if changed := snap.changes(t):
                    raise _fail(qd, g, where, f"dequantize modified {what}: {changed}")
    for dt in (torch.float32, torch.bfloat16):
        where = f"torch.nn.Parameter(make_tensor((4, 8), {dt}, seed=44), requires_grad=True)"
        g = variants(kind, (4, 8))[0]
        ctx.note(dtype=qd.name, granularity=g, input=where)
        plain = make_tensor((4, 8), dt, seed=44)
        param = torch.nn.Parameter(plain.clone(), requires_grad=True)
        snap = _Snapshot.of(param)
        try:
            got = outputs(scheme, qd, param, g)
            packed, _ = scheme.quantize_tensor(param, qd.name, g, pack=True)
            quantize_with_error(scheme, param, qd.name, g)
        except Exception as exc:
            detail = f"a requires_grad Parameter raised {type(exc).__name__}: {exc}; quantize its values"
            raise _fail(qd, g, where, detail) from exc
        if differs := same_outputs(got, outputs(scheme, qd, plain, g)):
            raise _fail(qd, g, where, f"a Parameter gives other results than its values: {differs}")
        plain_packed, _ = scheme.quantize_tensor(plain, qd.name, g, pack=True)
        if differs := code_difference("packed codes", packed, plain_packed):
            raise _fail(qd, g, where, f"a Parameter gives other results than its values: {differs}")
        if changed := snap.changes(param):
            raise _fail(qd, g, where, f"quantizing modified the Parameter: {changed}")


@conformance_check("dtype_granularity")
def check_same_input_gives_identical_output(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """The same input twice, or through a copy of the scheme, gives bit-identical results."""
    scheme, qd, kind = case_setup(subject, case)
    twin = copy.deepcopy(scheme)
    for inp in explicit_inputs(kind):
        ctx.note(dtype=qd.name, granularity=inp.granularity, input=inp)
        x = inp.make()
        first = outputs(scheme, qd, x, inp.granularity)
        for label, other in (("a second call", scheme), ("a copy of the scheme", twin)):
            differs = same_outputs(first, outputs(other, qd, x.clone(), inp.granularity))
            if differs:
                raise ConformanceError(
                    f"{label} on the same input gives other results: {differs}",
                    dtype=qd.name,
                    granularity=inp.granularity,
                    input=inp,
                )


Everything = tuple[QParams, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _everything(scheme: Scheme, qd: QuantDtype, x: torch.Tensor, g: Granularity) -> Everything:
    """Two-step results, the packed one-call codes and the checkpoint path's codes of ``x``."""
    qp, codes, values = outputs(scheme, qd, x, g)
    packed, _ = scheme.quantize_tensor(x, qd.name, g, pack=True)
    checkpoint, _, _ = quantize_with_error(scheme, x, qd.name, g)
    return qp, codes, values, packed, checkpoint


def _everything_differs(a: Everything, b: Everything) -> str | None:
    return (
        same_outputs(a[:3], b[:3])
        or code_difference("packed codes", a[3], b[3])
        or code_difference("quantize_with_error codes", a[4], b[4])
    )


def _fresh_instances(subject: Subject, scheme: Scheme) -> list[tuple[str, Scheme]]:
    """Other instances of the scheme that must agree with it.

    An installed scheme: two more from ``get_scheme`` (each a fresh copy of what the
    plugin registered). A scheme object tested in process: a new instance of its
    class, when that takes no arguments and describes itself the same way (so it was
    not built with other settings).
    """
    if subject.registered:
        return [("get_scheme(...) called again", get_scheme(scheme.name)) for _ in range(2)]
    try:
        built = type(scheme)().configure(
            profile=scheme.profile, nonfinite=scheme.nonfinite, nondivisible=scheme.nondivisible
        )
    except (TypeError, MonoQuantError):
        return []  # its constructor needs arguments
    built.distribution = scheme.distribution
    return [(f"a new {type(scheme).__name__}()", built)] if built.describe() == scheme.describe() else []


@conformance_check("dtype_granularity")
def check_results_do_not_depend_on_call_history(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Quantizing A, then very different tensors, then A again on the same scheme object gives A's results.

    B has a range 10,000 times larger, another shape, input dtype and granularity,
    and another of the scheme's dtypes; fresh instances (get_scheme for an installed
    scheme) agree with it too. No running statistics, no caches.
    """
    scheme, qd, kind = case_setup(subject, case)
    a_spec = TensorSpec((4, 8), torch.float32, "normal", seed=31)
    g_a = variants(kind, (4, 8))[0]
    others = [d for d in subject.int_dtypes() if d != qd.name][:1] or [qd.name]
    b_specs = [
        (TensorSpec((6, 5, 3), torch.float64, "uniform", seed=32, magnitude=1e4), qd),
        (TensorSpec((2, 16), torch.bfloat16, "outlier", seed=33, magnitude=37.0), get_dtype(others[0])),
        (TensorSpec((5,), torch.float16, "tiny", seed=34), qd),
    ]
    where = f"A = {a_spec} with {g_a}"
    ctx.note(dtype=qd.name, granularity=g_a, input=where)
    first = _everything(scheme, qd, a_spec.make(), g_a)
    history = []
    for spec, other_qd in b_specs:
        g_b = variants(kind, spec.shape)[-1]
        ctx.note(dtype=other_qd.name, granularity=g_b, input=spec)
        _everything(scheme, other_qd, spec.make(), g_b)
        history.append(f"{spec} as {other_qd.name} with {g_b}")
    ctx.note(dtype=qd.name, granularity=g_a, input=where)
    again = _everything(scheme, qd, a_spec.make(), g_a)
    if differs := _everything_differs(again, first):
        raise ConformanceError(
            f"quantizing A again after B gave other results than the first time: {differs}. B: "
            + "; ".join(history),
            dtype=qd.name,
            granularity=g_a,
            input=where,
        )
    for label, fresh in _fresh_instances(subject, scheme):
        if differs := _everything_differs(_everything(fresh, qd, a_spec.make(), g_a), first):
            raise ConformanceError(
                f"{label} gives other results on A than the scheme under test: {differs}",
                dtype=qd.name,
                granularity=g_a,
                input=where,
            )
