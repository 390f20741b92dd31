"""percentile equals numpy.percentile (method="linear") over every observed value, in float64.

torch.ao has no percentile observer; the reference is numpy on the concatenated
batches converted to float64, the result rounded to float32. The state keeps only
the tails, so the tests also check where that stops being enough: a refused batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import (
    ObserverError,
    PerChannel,
    PerTensor,
    UnsupportedOptionError,
    get_dtype,
    get_observer,
    get_scheme,
)
from mono_quant.observers import PercentileObserver


def observed_range(obs: PercentileObserver) -> tuple[torch.Tensor, torch.Tensor]:
    """The percentile range itself (the target does not change it)."""
    return obs.compute_range(get_dtype("int8"), get_scheme("asymmetric"))


def reference(batches: list[torch.Tensor], percentile: float, axis: int | None) -> np.ndarray:
    """numpy's percentile of all values (per channel along ``axis``), float64, rounded to float32."""
    if axis is None:
        values = np.concatenate([b.double().numpy().reshape(-1) for b in batches])
        return np.array(np.float32(np.percentile(values, percentile)))
    rows = np.concatenate(
        [np.moveaxis(b.double().numpy(), axis, 0).reshape(b.shape[axis], -1) for b in batches], 1
    )
    return np.percentile(rows, percentile, axis=1).astype(np.float32)


def check(
    batches: list[torch.Tensor], upper: float, lower: float | None, axis: int | None, capacity: int
) -> None:
    granularity = PerTensor() if axis is None else PerChannel(axis)
    obs = PercentileObserver(granularity, upper=upper, lower=lower, capacity=capacity)
    for b in batches:
        obs.observe(b)
    lo, hi = (t.numpy() for t in observed_range(obs))
    want_lo = reference(batches, obs.lower, axis)
    want_hi = reference(batches, obs.upper, axis)
    np.testing.assert_array_equal(lo, want_lo, err_msg=f"lower percentile {obs.lower}")
    np.testing.assert_array_equal(hi, want_hi, err_msg=f"upper percentile {obs.upper}")


@st.composite
def batch_lists(draw: st.DrawFn) -> list[torch.Tensor]:
    n, seed = draw(st.integers(1, 4)), draw(st.integers(0, 2**16))
    kinds = ("normal", "outlier", "ties", "constant", "positive", "negative", "uniform")
    return [
        make_tensor((draw(st.integers(1, 9)), 3), kind=draw(st.sampled_from(kinds)), seed=seed + i)
        + draw(st.sampled_from((0.0, 5.0)))
        for i in range(n)
    ]


@settings(max_examples=40)
@given(
    batches=batch_lists(),
    upper=st.sampled_from((100.0, 99.99, 99.9, 97.5, 90.0, 75.0, 50.0)),
    lower=st.sampled_from((None, 0.0, 1.0, 12.5)),
    axis=st.sampled_from((None, 1, -1)),
    capacity=st.sampled_from((4, 16, 1 << 16)),
)
def test_drawn_batches_equal_numpy_percentile(
    batches: list[torch.Tensor], upper: float, lower: float | None, axis: int | None, capacity: int
) -> None:
    values = sum(b.numel() for b in batches) // (1 if axis is None else 3)
    if values <= capacity:  # every value kept: always exact
        check(batches, upper, lower, axis, capacity)
        return
    try:
        check(batches, upper, lower, axis, capacity)
    except ObserverError as exc:
        # Refused only when the tails really are too short for these percentiles.
        refused = str(exc)
    else:
        return
    assert "keeps capacity=" in refused


@pytest.mark.parametrize("upper", [99.99, 99.0, 90.0])
def test_large_streams_with_small_tails_equal_numpy(upper: float) -> None:
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(512, 8, generator=g) * (1 + i) + i for i in range(6)]
    n = 6 * 512 * 8
    capacity = int((100 - upper) / 100 * n) + 2
    check(batches, upper, None, None, capacity)
    check(batches, upper, None, -1, capacity)


def test_a_batch_that_would_make_the_percentile_inexact_is_refused_with_the_capacity_to_use() -> None:
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(800, generator=g), torch.randn(800, generator=g)]
    obs = PercentileObserver(upper=99.0, capacity=10)
    obs.observe(batches[0])
    # 1600 values: numpy reads sorted[1583] and sorted[1584], the 17 largest.
    with pytest.raises(ObserverError, match=r"over 1600 values per granule needs its 17 most extreme values"):
        obs.observe(batches[1])
    assert obs.elements == 800, "the refused batch left no trace"
    check(batches, 99.0, None, None, capacity=17)  # exactly enough is exact


def test_merge_is_the_tails_of_the_union() -> None:
    g = torch.Generator().manual_seed(2)
    parts = [torch.randn(300, generator=g) * s for s in (1.0, 5.0, 0.5)]
    whole = PercentileObserver(upper=98.0, capacity=64)
    shards = [PercentileObserver(upper=98.0, capacity=64) for _ in parts]
    for shard, part in zip(shards, parts, strict=True):
        whole.observe(part)
        shard.observe(part)
    shards[0].merge(shards[1])
    shards[0].merge(shards[2])
    for a, b in zip(observed_range(shards[0]), observed_range(whole), strict=True):
        assert torch.equal(a, b)


def test_options_are_checked_and_named() -> None:
    with pytest.raises(UnsupportedOptionError, match=r"upper must be a number in \[0.0, 100.0\]; got 101"):
        get_observer("percentile", upper=101)
    with pytest.raises(UnsupportedOptionError, match=r"lower must be a number in \[0.0, 99.0\]; got 99.5"):
        get_observer("percentile", upper=99.0, lower=99.5)
    with pytest.raises(UnsupportedOptionError, match="capacity must be an integer >= 1; got 0"):
        get_observer("percentile", capacity=0)
    assert get_observer("percentile", upper=99.9).options["lower"] == 100.0 - 99.9
