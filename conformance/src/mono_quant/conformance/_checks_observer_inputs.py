"""Observer checks on single inputs: non-finite, half-precision and empty batches, shapes, qparams."""

from __future__ import annotations

import math
import re

import torch

from mono_quant.conformance._catalog import Case
from mono_quant.conformance._observer_probe import (
    DTYPE,
    EXPLICIT,
    PROBE,
    BatchSpec,
    DataScheme,
    assert_same,
    expect,
    fed,
    granularity_of,
    qparams_of,
    state_repr,
)
from mono_quant.conformance._observer_suite import ObserverSubject, observer_check
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import (
    EmptyTensorError,
    InputDtypeError,
    NonFiniteError,
    Observer,
    ObserverError,
    PerChannel,
    UnsupportedOptionError,
    dequantize,
    get_dtype,
    quantize,
)

__all__: list[str] = []


_BAD_AT = ((0, 1, 2), (1, 0, 0), (1, 2, 3))


@observer_check("observer_granularity")
def check_observer_nonfinite_batch_follows_policy(
    subject: ObserverSubject, case: Case, ctx: CheckContext
) -> None:
    """A batch with NaN/±inf: 'raise' names the batch, the count and the first index; 'skip' counts it.

    Either way the batch leaves no trace in the statistics.
    """
    clean = EXPLICIT[0].make()
    for policy in subject.cls.capabilities.nonfinite:
        for value in (math.nan, math.inf, -math.inf):
            obs = subject.new(granularity_of(case), nonfinite=policy)
            for b in clean:
                obs.observe(b)
            before = qparams_of(obs)
            bad = make_tensor((2, 3, 4), seed=9)
            for index in _BAD_AT:
                bad[index] = value
            where = f"make_tensor((2, 3, 4), seed=9) with {value} at {', '.join(map(str, _BAD_AT))}"
            if policy == "raise":
                try:
                    obs.observe(bad, name="conformance.activation")
                except NonFiniteError as exc:
                    text = str(exc)
                    for what, ok in (
                        ("the batch name", "conformance.activation" in text),
                        ("the count 3", re.search(r"\b3\b", text) is not None),
                        ("the first index (0, 1, 2)", "0, 1, 2" in text),
                    ):
                        if not ok:
                            raise ConformanceError(
                                f"NonFiniteError lacks {what}: {text!r}", input=where
                            ) from exc
                else:
                    raise ConformanceError("nonfinite='raise' accepted a non-finite batch", input=where)
            elif policy == "skip":
                obs.observe(bad)
                if obs.skipped != 1:
                    raise ConformanceError(
                        f"nonfinite='skip' counted {obs.skipped} skipped batches, not 1", input=where
                    )
            else:
                raise CheckSkipped(f"no policy this suite knows among {subject.cls.capabilities.nonfinite!r}")
            if obs.batches != len(clean):
                raise ConformanceError(f"the refused batch was counted: {obs.batches} batches", input=where)
            assert_same(qparams_of(obs), before, f"nonfinite={policy!r} changed the statistics", case, where)


@observer_check("observer_granularity")
def check_observer_half_precision_batches(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """float16/bfloat16/float64 batches give the qparams of the same values in float32 (float32 math)."""
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        narrow = [b.to(dtype) for b in EXPLICIT[0].make()]
        ours = qparams_of(fed(subject, case, narrow))
        assert_same(
            ours,
            qparams_of(fed(subject, case, [b.float() for b in narrow])),
            f"{dtype} batches",
            case,
            str(dtype),
        )


@observer_check("observer_granularity")
def check_observer_empty_batch_is_refused(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """An empty batch raises EmptyTensorError and an integer one InputDtypeError; neither leaves a trace."""
    obs = fed(subject, case, EXPLICIT[0].make())
    before = state_repr(obs.state_dict())
    expect(EmptyTensorError, lambda: obs.observe(torch.empty(0, 4)), "observe(torch.empty(0, 4))", case)
    expect(
        InputDtypeError,
        lambda: obs.observe(torch.ones(2, 4, dtype=torch.int32)),
        "observe(int32 batch)",
        case,
    )
    if state_repr(obs.state_dict()) != before:
        raise ConformanceError("a refused batch changed the observer's state")


@observer_check("observer")
def check_observer_per_channel_shapes(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """Per channel on any axis gives (C,) scales; a batch with another channel count is refused."""
    if "per_channel" not in subject.cls.capabilities.granularities:
        raise CheckSkipped("the observer does not claim per_channel")
    x = make_tensor((3, 5, 4), seed=5)
    for axis in (0, 1, 2, -1, -3):
        obs = subject.new(PerChannel(axis))
        obs.observe(x)
        obs.observe(x * 2)
        qp = qparams_of(obs)
        want = (x.shape[axis],)
        assert qp.scale is not None and qp.zero_point is not None
        if tuple(qp.scale.shape) != want or tuple(qp.zero_point.shape) != want:
            raise ConformanceError(
                f"scale/zero-point shapes {tuple(qp.scale.shape)}/{tuple(qp.zero_point.shape)}; "
                f"expected {want}",
                granularity=PerChannel(axis),
                input="make_tensor((3, 5, 4), seed=5), then twice it",
            )
        if qp.granularity != PerChannel(axis):
            raise ConformanceError(f"qparams claim {qp.granularity}, not {PerChannel(axis)}")
        other = make_tensor((3, 5, 4), seed=6).movedim(axis, 0)[:2].movedim(0, axis)

        def observe(obs: Observer = obs, other: torch.Tensor = other) -> None:
            obs.observe(other)

        expect(
            ObserverError,
            observe,
            f"a batch with another channel count on axis {axis}",
            Case("", "per_channel"),
        )


@observer_check("observer_granularity")
def check_observer_qparams_follow_the_scheme(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """Qparams are valid for constant and one-signed data (0.0 exact); refused before any batch.

    Float targets give cast qparams; a scheme that is not range-based is refused.
    """
    qd = get_dtype(DTYPE)
    assert qd.qmin is not None and qd.qmax is not None
    expect(
        ObserverError,
        lambda: qparams_of(subject.new(granularity_of(case))),
        "qparams() before any batch",
        case,
    )
    for kind in ("zeros", "constant", "positive", "negative"):
        spec = BatchSpec((kind, kind), 7)
        qp = qparams_of(fed(subject, case, spec.make()))
        assert qp.scale is not None and qp.zero_point is not None
        ok = bool(torch.isfinite(qp.scale).all() and (qp.scale > 0).all())
        ok = ok and bool(((qp.zero_point >= qd.qmin) & (qp.zero_point <= qd.qmax)).all())
        if not ok:
            raise ConformanceError(
                f"invalid qparams {qp.scale.tolist()} / {qp.zero_point.tolist()}", input=spec
            )
        zero = torch.zeros(2, 4)
        back = dequantize(quantize(zero, qp), qp)
        if not torch.equal(back, zero):
            raise ConformanceError(f"0.0 does not round-trip exactly: {back.tolist()}", input=spec)
    obs = fed(subject, case, EXPLICIT[0].make())
    cast = obs.qparams(PROBE, "float16")
    if not cast.is_float:
        raise ConformanceError("a float16 target must give cast qparams (no scale, no zero-point)")
    expect(
        UnsupportedOptionError,
        lambda: obs.qparams(DataScheme(), DTYPE),
        "a scheme that is not range-based",
        case,
    )
