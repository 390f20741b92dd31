"""minmax, moving-average-minmax and histogram equal torch.ao's observers bit for bit.

Same batch sequence into both; our qparams come through the real ``asymmetric`` and
``symmetric`` schemes (default profile), torch.ao's from ``calculate_qparams``. Batch
sequences are drawn by hypothesis, plus fixed edge cases: constant batches, one huge
outlier, all-negative data and data far from 0 (where the original project's
histogram observer was wrong). The running statistics (min/max, histogram) are
compared too, so an equal qparams result cannot hide a different state.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import observer as ao

from mono_quant.conformance.differential import assert_bitexact
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import Granularity, Observer, PerChannel, PerTensor, get_observer, get_scheme

#: (our dtype, torch.ao dtype); symmetric or not picks the scheme and the qscheme.
TARGETS = [
    ("int8", torch.qint8, False),
    ("uint8", torch.quint8, False),
    ("int8", torch.qint8, True),
    ("uint8", torch.quint8, True),
]
KINDS = ("normal", "uniform", "positive", "negative", "constant", "zeros", "outlier", "ties", "tiny")


def torch_ao(
    name: str, granularity: Granularity, ao_dtype: torch.dtype, symmetric: bool, c: float, bins: int
) -> Any:
    """The torch.ao observer that ``name`` with ``granularity`` reproduces."""
    if isinstance(granularity, PerTensor):
        qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        if name == "minmax":
            return ao.MinMaxObserver(dtype=ao_dtype, qscheme=qscheme)
        if name == "moving-average-minmax":
            return ao.MovingAverageMinMaxObserver(averaging_constant=c, dtype=ao_dtype, qscheme=qscheme)
        return ao.HistogramObserver(bins=bins, dtype=ao_dtype, qscheme=qscheme)
    assert isinstance(granularity, PerChannel)
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    if name == "minmax":
        return ao.PerChannelMinMaxObserver(ch_axis=granularity.axis, dtype=ao_dtype, qscheme=qscheme)
    return ao.MovingAveragePerChannelMinMaxObserver(
        averaging_constant=c, ch_axis=granularity.axis, dtype=ao_dtype, qscheme=qscheme
    )


def targets(name: str) -> list[tuple[str, torch.dtype, bool]]:
    """Every target; for the histogram two, as its range search does not depend on the
    formula (the 4 formulas are checked through minmax) and torch.ao's search is slow."""
    return [TARGETS[1], TARGETS[2]] if name == "histogram" else TARGETS


def ours(name: str, granularity: Granularity, c: float, bins: int) -> Observer:
    options = {"moving-average-minmax": {"averaging_constant": c}, "histogram": {"bins": bins}}
    return get_observer(name, granularity, **options.get(name, {}))


def mismatches(
    name: str, granularity: Granularity, batches: list[torch.Tensor], c: float = 0.01, bins: int = 2048
) -> list[str]:
    """Every (target) on which ours and torch.ao differ after ``batches``; empty when bit-exact.

    Per channel, the batches' last axis (5 channels, the one whose size never varies)
    is moved to the granularity's axis first.
    """
    if isinstance(granularity, PerChannel):
        batches = [b.movedim(-1, granularity.axis) for b in batches]
    out = []
    obs = ours(name, granularity, c, bins)  # one observer answers every target
    for b in batches:
        obs.observe(b)
    for dtype, ao_dtype, symmetric in targets(name):
        scheme = get_scheme("symmetric" if symmetric else "asymmetric")
        ref = torch_ao(name, granularity, ao_dtype, symmetric, c, bins)
        for b in batches:
            ref(b)
        qp = obs.qparams(scheme, dtype)
        assert qp.scale is not None and qp.zero_point is not None
        what = f"{name} {granularity} {scheme.name} {dtype}"
        try:
            scale, zero_point = ref.calculate_qparams()
        except AssertionError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            # A moving average of a constant can leave min an ulp above max in float32;
            # torch.ao then refuses (check_min_max_valid). Ours widens the range to
            # include 0 as always: valid qparams, and the same running state (below).
            assert "should be less than max" in refusal, refusal
            assert name == "moving-average-minmax" and bool(torch.isfinite(qp.scale).all())
            TORCH_AO_REFUSED.append(what)
        else:
            for label, a, b in (("scale", qp.scale, scale), ("zero_point", qp.zero_point, zero_point)):
                try:
                    assert_bitexact(a, b, f"{label} {what}")
                except AssertionError as exc:
                    out.append(str(exc))
        state = obs.export_state()
        pairs = [("lo", "min_val"), ("hi", "max_val")]
        if name == "histogram":
            pairs = [("min", "min_val"), ("max", "max_val"), ("histogram", "histogram")]
        for mine, theirs in pairs:
            value = state[mine]
            assert isinstance(value, torch.Tensor)
            if not torch.equal(value.reshape(-1), getattr(ref, theirs).reshape(-1)):
                out.append(f"state {mine} {what}: {value.tolist()} vs torch.ao {theirs}")
    return out


@st.composite
def sequences(draw: st.DrawFn, max_batches: int = 4) -> tuple[list[torch.Tensor], str]:
    """1..4 batches of shape (B, T, 5), each of a drawn kind, magnitude and offset from 0."""
    n = draw(st.integers(1, max_batches))
    seed = draw(st.integers(0, 2**16))
    batches, parts = [], []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)), 5)
        magnitude = draw(st.sampled_from((1e-3, 1.0, 50.0, 1e4)))
        offset = draw(st.sampled_from((0.0, 0.0, 3.0, -100.0)))
        batches.append(make_tensor(shape, kind=kind, seed=seed + i, magnitude=magnitude) + offset)
        parts.append(
            f"make_tensor({shape}, kind={kind!r}, seed={seed + i}, magnitude={magnitude}) + {offset}"
        )
    return batches, "[" + ", ".join(parts) + "]"


def edge_cases() -> dict[str, list[torch.Tensor]]:
    """Fixed sequences every run checks, whatever hypothesis draws."""
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(4, 6, 5, generator=g)
    outlier = normal.clone()
    outlier[1, 2, 3] = 1e6
    return {
        "constant batches": [torch.full((2, 3, 5), 2.5), torch.full((3, 3, 5), 2.5)],
        "all zeros": [torch.zeros(2, 3, 5)],
        "constant then wider": [torch.full((2, 3, 5), -1.0), normal],
        "one huge outlier": [normal, outlier, normal * 0.5],
        "all negative": [-(normal.abs() + 0.1), -(normal.abs() * 3 + 2)],
        "not centred on 0": [normal * 0.1 + 100.0, normal * 0.2 + 101.0, normal * 0.1 + 99.5],
        "not centred, negative side": [normal + -40.0, normal * 2 - 42.0],
        "growing range": [normal * s for s in (0.1, 1.0, 10.0, 100.0)],
        "shrinking range": [normal * s for s in (100.0, 10.0, 1.0)],
    }


#: Comparisons where torch.ao raised instead of giving qparams (min above max by rounding).
TORCH_AO_REFUSED: list[str] = []

PER_TENSOR = ["minmax", "moving-average-minmax", "histogram"]
PER_CHANNEL = ["minmax", "moving-average-minmax"]
OBSERVERS = [(n, PerTensor()) for n in PER_TENSOR] + [
    (n, PerChannel(a)) for n in PER_CHANNEL for a in (0, -1)
]


@pytest.mark.parametrize(("name", "granularity"), OBSERVERS, ids=str)
@pytest.mark.parametrize("case", list(edge_cases()))
def test_edge_cases_equal_torch_ao(name: str, granularity: Granularity, case: str) -> None:
    assert mismatches(name, granularity, edge_cases()[case], c=0.25) == []


@pytest.mark.parametrize(("name", "granularity"), [o for o in OBSERVERS if o[0] != "histogram"], ids=str)
@settings(max_examples=10)  # 4 targets per example; torch.ao's observers are most of the cost
@given(data=sequences(), c=st.sampled_from((0.01, 0.5, 1.0)))
def test_drawn_batch_sequences_equal_torch_ao(
    name: str, granularity: Granularity, data: tuple[list[torch.Tensor], str], c: float
) -> None:
    batches, text = data
    assert mismatches(name, granularity, batches, c) == [], text


@settings(max_examples=4)  # torch.ao's histogram search is slow Python: few, varied examples
@given(data=sequences(), bins=st.sampled_from((64, 256)))
def test_drawn_batch_sequences_equal_torch_ao_histogram(
    data: tuple[list[torch.Tensor], str], bins: int
) -> None:
    """Fewer bins than the 2048 default, for speed; the fixed cases and the sweep use the default."""
    batches, text = data
    assert mismatches("histogram", PerTensor(), batches, bins=bins) == [], text


def test_fp16_and_bf16_batches_match_torch_ao_on_the_float32_values() -> None:
    # torch.ao computes min/max observers in float32 too (x.to(min_val.dtype)).
    x = torch.randn(3, 4, 5).to(torch.bfloat16)
    for name, granularity in OBSERVERS:
        if name == "histogram":
            continue  # torch.ao's histogram bins bf16 input in bf16; ours (and its on fp32) in fp32
        assert mismatches(name, granularity, [x, x.half() * 2]) == []


#: Sequences in the fixed sweep; ``MONO_QUANT_SWEEP=400`` for the counts of a closing note.
SWEEP = int(os.environ.get("MONO_QUANT_SWEEP", "8"))


@pytest.mark.parametrize(
    ("name", "granularity"),
    [(n, PerTensor()) for n in PER_TENSOR] + [(n, PerChannel(-1)) for n in PER_CHANNEL],
    ids=str,
)
def test_sweep_counts_zero_mismatches(
    name: str, granularity: Granularity, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fixed sweep, reproducible without hypothesis: SWEEP sequences, 4 targets each."""
    compared = bad = 0
    refused_before = len(TORCH_AO_REFUSED)
    for s in range(SWEEP):
        g = torch.Generator().manual_seed(s)
        batches = [
            torch.randn(1 + s % 3, 4, 5, generator=g) * float(10 ** (s % 5 - 2)) + float((s % 7 - 3) * 10)
            for _ in range(1 + s % 4)
        ]
        if s % 5 == 0:
            batches[0].reshape(-1)[s % 20] = 1e5
        found = mismatches(name, granularity, batches, c=(0.01, 0.1, 1.0)[s % 3])
        compared += len(targets(name))
        bad += len(found)
    refused = len(TORCH_AO_REFUSED) - refused_before
    with capsys.disabled():
        print(
            f"\n{name} {granularity}: {compared} qparams compared with torch.ao, {bad} mismatches"
            + (f" ({refused} where torch.ao refused: min above max by rounding)" if refused else "")
        )
    assert bad == 0
