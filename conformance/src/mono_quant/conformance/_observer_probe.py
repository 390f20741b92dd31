"""The probe the observer checks share: a scheme to compute qparams, batch sequences, comparisons."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from mono_quant.conformance._catalog import Case
from mono_quant.conformance._observer_suite import ObserverSubject
from mono_quant.conformance._results import ConformanceError
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import (
    Capabilities,
    Granularity,
    MinMaxScheme,
    MonoQuantError,
    Observer,
    PerChannel,
    PerTensor,
    QParams,
    QuantDtype,
    Scheme,
    asymmetric_qparams,
)

__all__ = [
    "DTYPE",
    "EXPLICIT",
    "GRANULARITY",
    "PROBE",
    "BatchSpec",
    "DataScheme",
    "ProbeScheme",
    "assert_same",
    "expect",
    "fed",
    "granularity_of",
    "qparams_of",
    "specs",
    "state_repr",
]

DTYPE = "int8"
#: The granularity each claimed kind is checked with: per channel along the last axis,
#: as activations are (one scale per hidden unit whatever the batch and sequence sizes).
GRANULARITY: dict[str, Granularity] = {"per_tensor": PerTensor(), "per_channel": PerChannel(-1)}
#: Leading shapes the batches of a sequence rotate through; the last axis has 4 channels.
SHAPES = ((2, 3, 4), (1, 5, 4), (3, 1, 4), (4, 2, 4))
KINDS = ("normal", "uniform", "positive", "negative", "constant", "zeros", "outlier", "ties")


class ProbeScheme(MinMaxScheme):
    """The scheme observer checks compute qparams with: core's asymmetric formula, default profile."""

    name = "conformance-probe-asymmetric"
    version = "1"
    capabilities = Capabilities(profiles=("default",), granularities=("per_tensor", "per_channel"))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Asymmetric scale and zero-point."""
        return asymmetric_qparams(lo, hi, dtype, self.profile)


class DataScheme(Scheme):
    """A scheme that computes qparams from the tensor itself: an observer must refuse it."""

    name = "conformance-probe-data"
    version = "1"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # never called by an observer


PROBE = ProbeScheme()


@dataclass(frozen=True)
class BatchSpec:
    """A deterministic batch sequence: one :func:`make_tensor` kind per batch, shapes rotating.

    ``str(spec)`` says how to rebuild it, so a failure can be replayed.
    """

    kinds: tuple[str, ...]
    seed: int = 0
    magnitude: float = 1.0

    def make(self) -> list[torch.Tensor]:
        """The batches (fresh tensors on every call)."""
        return [
            make_tensor(
                SHAPES[(self.seed + i) % len(SHAPES)], kind=k, seed=self.seed + i, magnitude=self.magnitude
            )
            for i, k in enumerate(self.kinds)
        ]

    def __str__(self) -> str:
        return f"BatchSpec(kinds={self.kinds!r}, seed={self.seed}, magnitude={self.magnitude}).make()"


def specs(min_size: int = 1, max_size: int = 4) -> st.SearchStrategy[BatchSpec]:
    """Batch sequences of ``min_size`` to ``max_size`` batches, kinds and magnitudes drawn."""
    return st.builds(
        BatchSpec,
        st.lists(st.sampled_from(KINDS), min_size=min_size, max_size=max_size).map(tuple),
        st.integers(0, 2**16),
        st.sampled_from((1e-3, 1.0, 300.0)),
    )


EXPLICIT = (
    BatchSpec(("normal", "outlier", "positive"), 1),
    BatchSpec(("constant", "constant"), 2),
    BatchSpec(("negative", "uniform", "zeros", "normal"), 3, 300.0),
)


def granularity_of(case: Case) -> Granularity:
    """The granularity a case's kind is checked with."""
    assert case.granularity is not None
    return GRANULARITY[case.granularity]


def fed(subject: ObserverSubject, case: Case, batches: Sequence[torch.Tensor]) -> Observer:
    """A fresh observer of ``subject`` that has seen ``batches``."""
    obs = subject.new(granularity_of(case))
    for b in batches:
        obs.observe(b)
    return obs


def qparams_of(obs: Observer) -> QParams:
    """``obs``'s qparams through the probe scheme, int8."""
    return obs.qparams(PROBE, DTYPE)


def assert_same(a: QParams, b: QParams, what: str, case: Case, input: object) -> None:
    """Raise a ConformanceError showing both when ``a`` and ``b`` differ in any bit."""
    if a.equals(b):
        return
    raise ConformanceError(
        f"{what}: scale {values_of(a.scale)} / zero-point {values_of(a.zero_point)} "
        f"vs scale {values_of(b.scale)} / zero-point {values_of(b.zero_point)}",
        dtype=DTYPE,
        granularity=GRANULARITY.get(case.granularity or ""),
        input=input,
    )


def values_of(t: torch.Tensor | None) -> object:
    """A tensor's values as nested lists, for messages."""
    return None if t is None else t.tolist()


def state_repr(state: object) -> object:
    """A state dict with tensors replaced by (dtype, shape, values), for exact comparison."""
    if isinstance(state, torch.Tensor):
        return (str(state.dtype), tuple(state.shape), state.tolist())
    if isinstance(state, dict):
        return {k: state_repr(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [state_repr(v) for v in state]
    return state


def expect(error: type[MonoQuantError], call: Callable[[], object], what: str, case: Case) -> None:
    """Raise a ConformanceError unless ``call()`` raises ``error``."""
    try:
        call()
    except error:
        return
    except Exception as exc:
        raise ConformanceError(
            f"{what} raised {type(exc).__name__}, not {error.__name__}: {exc}",
            granularity=GRANULARITY.get(case.granularity or ""),
        ) from exc
    raise ConformanceError(
        f"{what} was accepted; expected {error.__name__}",
        granularity=GRANULARITY.get(case.granularity or ""),
    )
