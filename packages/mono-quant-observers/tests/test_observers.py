"""Behaviour specific to each observer: merges, state and what the numbers mean."""

from __future__ import annotations

import torch

from mono_quant.core import PerChannel, QuantDtype, get_dtype, get_scheme
from mono_quant.observers import HistogramObserver, MovingAverageMinMaxObserver


def batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 8, generator=g) * (1 + i) + i for i in range(n)]


def test_moving_average_merge_replays_the_other_batches_exactly() -> None:
    data = batches(6)
    whole = MovingAverageMinMaxObserver(PerChannel(-1), averaging_constant=0.3)
    a = MovingAverageMinMaxObserver(PerChannel(-1), averaging_constant=0.3)
    b = MovingAverageMinMaxObserver(PerChannel(-1), averaging_constant=0.3)
    for i, x in enumerate(data):
        whole.observe(x)
        (a if i < 2 else b).observe(x)
    a.merge(b)
    for key in ("lo", "hi", "batch_lo", "batch_hi"):
        assert torch.equal(a.export_state()[key], whole.export_state()[key]), key  # type: ignore[arg-type]
    # A plain average of the two halves' results would differ: the order matters.
    assert not torch.equal(b.export_state()["lo"], whole.export_state()["lo"])  # type: ignore[arg-type]


def test_histogram_merge_is_close_to_sequential_observation() -> None:
    data = batches(4)
    whole, a, b = HistogramObserver(), HistogramObserver(), HistogramObserver()
    for i, x in enumerate(data):
        whole.observe(x)
        (a if i < 2 else b).observe(x)
    a.merge(b)
    state, ref = a.export_state(), whole.export_state()
    assert torch.equal(state["min"], ref["min"]) and torch.equal(state["max"], ref["max"])  # type: ignore[arg-type]
    assert float(state["histogram"].sum()) == float(ref["histogram"].sum()) == 4 * 16 * 8  # type: ignore[union-attr]
    scheme = get_scheme("asymmetric")
    merged, sequential = a.qparams(scheme, "uint8").scale, whole.qparams(scheme, "uint8").scale
    assert merged is not None and sequential is not None
    assert abs(float(merged) / float(sequential) - 1) < 0.02  # re-binning moves the range by a bin or two


def test_histogram_range_shrinks_into_the_data_more_for_fewer_levels() -> None:
    # torch.ao's L2 search (ours) clips little for 256 levels and more for 16.
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(100000, generator=g) * 2 - 1, torch.rand(300, generator=g) * 9 + 1])
    obs = HistogramObserver()
    obs.observe(x)
    scheme = get_scheme("symmetric")
    _, hi8 = obs.compute_range(get_dtype("int8"), scheme)
    _, hi4 = obs.compute_range(QuantDtype("int4-test", 4, True, -8, 7, "int8"), scheme)
    assert float(hi4) < float(hi8) < float(x.max())


def test_histogram_range_of_data_far_from_zero_stays_on_the_data() -> None:
    # The original project's histogram assumed data centred on 0; torch.ao's search (ours) does not.
    x = torch.rand(5000, generator=torch.Generator().manual_seed(1)) + 100.0  # in [100, 101)
    obs = HistogramObserver()
    obs.observe(x)
    lo, hi = obs.compute_range(get_dtype("uint8"), get_scheme("asymmetric"))
    assert 100.0 <= float(lo) < float(hi) <= float(x.max()) + 1e-3 and float(hi) > 100.9
