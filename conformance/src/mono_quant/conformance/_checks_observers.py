"""Observer checks on batch sequences: merging, splitting, reset, state round trip, determinism.

Every observer plugin runs these (and :mod:`._checks_observer_inputs`). Qparams come
from a probe scheme the suite defines (core's asymmetric formula, int8), so the
checks need no scheme plugin installed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch
from hypothesis import strategies as st

from mono_quant.conformance._catalog import Case
from mono_quant.conformance._observer_probe import (
    EXPLICIT,
    GRANULARITY,
    BatchSpec,
    assert_same,
    expect,
    fed,
    granularity_of,
    qparams_of,
    specs,
    state_repr,
)
from mono_quant.conformance._observer_suite import ObserverSubject, observer_check
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.core import (
    ObserverCapabilities,
    ObserverError,
    PerChannel,
    PerGroup,
    UnsupportedGranularityError,
)

__all__: list[str] = []


@observer_check("observer")
def check_observer_declares_name_version_and_capabilities(
    subject: ObserverSubject, case: Case, ctx: CheckContext
) -> None:
    """The observer has a name, a version and capabilities; its defaults build; 'raise' is the default.

    A fresh observer describes itself as JSON and refuses the granularities it does not claim.
    """
    cls = subject.cls
    for attr in ("name", "version"):
        value = getattr(cls, attr, None)
        if not isinstance(value, str) or not value:
            raise ConformanceError(f"the observer class {cls.__name__} has no {attr} string (got {value!r})")
    caps = cls.capabilities
    if not isinstance(caps, ObserverCapabilities):
        raise ConformanceError(f"capabilities must be an ObserverCapabilities, got {type(caps).__name__}")
    unknown = set(caps.granularities) - set(GRANULARITY)
    if not caps.granularities or unknown:
        raise ConformanceError(
            f"granularities must be a non-empty subset of {sorted(GRANULARITY)}; got {caps.granularities!r}"
        )
    if not caps.nonfinite or caps.nonfinite[0] != "raise":
        raise ConformanceError(
            f"the default non-finite policy (the first declared) must be 'raise'; got {caps.nonfinite!r}"
        )
    obs = subject.new()
    if obs.nonfinite != "raise" or obs.batches != 0:
        raise ConformanceError(f"a fresh observer must start with nonfinite='raise' and 0 batches: {obs!r}")
    json.dumps(obs.describe())
    for kind, g in (("per_channel", PerChannel(0)), ("per_group", PerGroup(-1, 2))):
        if kind in caps.granularities:
            continue
        try:
            subject.new(g)
        except UnsupportedGranularityError:
            continue
        raise ConformanceError(f"{g} is not claimed, yet the observer was created with it", granularity=g)


@observer_check("observer_granularity")
def check_observer_merge_equals_sequential_observation(
    subject: ObserverSubject, case: Case, ctx: CheckContext
) -> None:
    """merge(a, b) equals observing a's batches then b's (exact merge); b is left unchanged.

    An 'approximate' merge must still count every batch and give valid qparams.
    Merging an empty observer changes nothing; merging into an empty one copies.
    """
    exact = subject.cls.capabilities.merge == "exact"

    def prop(specs: tuple[BatchSpec, BatchSpec]) -> None:
        first, second = specs[0].make(), specs[1].make()
        sequential = fed(subject, case, first + second)
        a, b = fed(subject, case, first), fed(subject, case, second)
        b_before = state_repr(b.state_dict())
        a.merge(b)
        if state_repr(b.state_dict()) != b_before:
            raise ConformanceError("merge(a, b) changed b", input=specs)
        if (a.batches, a.elements) != (sequential.batches, sequential.elements):
            raise ConformanceError(
                f"merged observer counts {a.batches} batches / {a.elements} elements; sequential "
                f"observation counts {sequential.batches} / {sequential.elements}",
                input=specs,
            )
        merged = qparams_of(a)
        if exact:
            assert_same(
                merged, qparams_of(sequential), "merge(a, b) differs from observing a then b", case, specs
            )
        elif merged.scale is None or not bool(
            torch.isfinite(merged.scale).all() and (merged.scale > 0).all()
        ):
            raise ConformanceError(f"an approximate merge gave scale {merged.scale!r}", input=specs)
        empty = subject.new(granularity_of(case))
        empty.merge(b)
        assert_same(qparams_of(empty), qparams_of(b), "merging into an empty observer", case, specs)
        before = qparams_of(b)
        b.merge(subject.new(granularity_of(case)))
        assert_same(qparams_of(b), before, "merging an empty observer in", case, specs)

    explicit = [(EXPLICIT[0], EXPLICIT[2]), (EXPLICIT[2], EXPLICIT[1])]  # b widens a's range, then not
    ctx.for_each(st.tuples(specs(), specs()), prop, explicit=explicit, max_examples=10)


@observer_check("observer_granularity")
def check_observer_split_batch_equals_whole(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """Observing one batch equals observing its split into several, in any order (order-free observers)."""
    if not subject.cls.capabilities.order_free:
        raise CheckSkipped(
            "the observer declares order_free=False: its result depends on how batches are cut"
        )

    def prop(spec: BatchSpec) -> None:
        whole = torch.cat([b.reshape(-1, 4) for b in spec.make()])  # (n, 4): the channels kept
        parts = list(torch.tensor_split(whole, 3))
        reference = qparams_of(fed(subject, case, [whole]))
        assert_same(qparams_of(fed(subject, case, parts)), reference, "observing the split", case, spec)
        assert_same(
            qparams_of(fed(subject, case, parts[::-1])), reference, "observing the split reversed", case, spec
        )

    ctx.for_each(specs(min_size=3, max_size=4), prop, explicit=[EXPLICIT[0], EXPLICIT[2]])


@observer_check("observer_granularity")
def check_observer_reset_forgets_everything(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """After reset() the observer is as new: no batches, qparams refused, then the same as a fresh one."""
    first, second = EXPLICIT[0].make(), EXPLICIT[2].make()
    obs = fed(subject, case, first)
    obs.reset()
    if obs.batches or obs.elements or obs.skipped:
        raise ConformanceError(f"after reset() the counters are {obs.batches}/{obs.elements}/{obs.skipped}")
    expect(ObserverError, lambda: qparams_of(obs), "qparams() after reset()", case)
    fresh_state = state_repr(subject.new(granularity_of(case)).state_dict())
    if state_repr(obs.state_dict()) != fresh_state:
        raise ConformanceError("after reset() the state dict differs from a fresh observer's")
    for b in second:
        obs.observe(b)
    assert_same(
        qparams_of(obs), qparams_of(fed(subject, case, second)), "reset then observe", case, EXPLICIT[2]
    )


@observer_check("observer_granularity")
def check_observer_state_round_trip(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """state_dict() survives torch.save/load(weights_only=True); a loaded observer continues identically.

    A state of another observer, granularity or options is refused with ObserverError.
    """

    def prop(specs: tuple[BatchSpec, BatchSpec]) -> None:
        first, second = specs[0].make(), specs[1].make()
        original = fed(subject, case, first)
        buffer = io.BytesIO()
        torch.save(original.state_dict(), buffer)
        buffer.seek(0)
        loaded = subject.new(granularity_of(case))
        loaded.load_state_dict(torch.load(buffer, weights_only=True))
        assert_same(qparams_of(loaded), qparams_of(original), "the loaded state", case, specs)
        for b in second:
            original.observe(b)
            loaded.observe(b)
        assert_same(qparams_of(loaded), qparams_of(original), "continuing from the loaded state", case, specs)

    ctx.for_each(st.tuples(specs(), specs()), prop, explicit=[(EXPLICIT[0], EXPLICIT[1])], max_examples=10)
    state = fed(subject, case, EXPLICIT[0].make()).state_dict()
    other_kind = "per_tensor" if case.granularity == "per_channel" else "per_channel"
    tampered = [
        dict(state, observer=state["observer"] + "-other"),
        dict(state, options={"no-such-option": 1}),
    ]
    if other_kind in subject.cls.capabilities.granularities:
        tampered.append(dict(state, granularity=GRANULARITY[other_kind].to_dict()))
    for bad in tampered:

        def load(bad: dict[str, Any] = bad) -> None:
            subject.new(granularity_of(case)).load_state_dict(bad)

        expect(ObserverError, load, "loading a foreign state", case)


#: Where the non-finite values go in a (2, 3, 4) batch: the first is (0, 1, 2), three in all.


@observer_check("observer_granularity")
def check_observer_is_deterministic(subject: ObserverSubject, case: Case, ctx: CheckContext) -> None:
    """The same batches give the same state, bit for bit, and the batches are never modified."""

    def prop(spec: BatchSpec) -> None:
        batches = spec.make()
        a = fed(subject, case, batches)
        if not all(torch.equal(x, y) for x, y in zip(batches, spec.make(), strict=True)):
            raise ConformanceError("observe() modified a batch", input=spec)
        b = fed(subject, case, spec.make())
        if state_repr(a.state_dict()) != state_repr(b.state_dict()):
            raise ConformanceError("two observers fed the same batches hold different states", input=spec)
        assert_same(qparams_of(a), qparams_of(b), "the same batches twice", case, spec)

    ctx.for_each(specs(), prop, explicit=list(EXPLICIT), max_examples=10)
