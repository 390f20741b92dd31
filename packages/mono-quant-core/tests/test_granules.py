"""The shared reduction: per-granule min/max in one pass, and the row layout both ways."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import GranuleLayout, PerChannel, PerGroup, PerTensor, granule_minmax


@st.composite
def shaped_case(draw: st.DrawFn) -> tuple[torch.Tensor, PerTensor | PerChannel | PerGroup, bool]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**31 - 1))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if draw(st.booleans()) and ndim >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)  # same values, non-contiguous
    kind = draw(st.sampled_from(["tensor", "channel", "group"]))
    axis = draw(st.integers(-ndim, ndim - 1))
    if kind == "tensor":
        return x, PerTensor(), False
    if kind == "channel":
        return x, PerChannel(axis), False
    return x, PerGroup(axis, draw(st.integers(1, shape[axis] + 2))), True


def brute_force(x: torch.Tensor, g: PerTensor | PerChannel | PerGroup) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: loop over granules with plain indexing."""
    if isinstance(g, PerTensor):
        return x.min(), x.max()
    axis = g.axis % x.dim()
    if isinstance(g, PerChannel):
        parts = [x.select(axis, i) for i in range(x.shape[axis])]
        return torch.stack([p.min() for p in parts]), torch.stack([p.max() for p in parts])
    n = math.ceil(x.shape[axis] / g.group_size)
    chunks = [
        x.narrow(axis, i * g.group_size, min(g.group_size, x.shape[axis] - i * g.group_size))
        for i in range(n)
    ]
    lo = torch.stack([c.amin(dim=axis) for c in chunks], dim=axis)
    hi = torch.stack([c.amax(dim=axis) for c in chunks], dim=axis)
    return lo, hi


@given(shaped_case())
def test_granule_minmax_equals_a_brute_force_loop(case: tuple[torch.Tensor, object, bool]) -> None:
    x, g, _ = case
    assert isinstance(g, (PerTensor, PerChannel, PerGroup))
    lo, hi = granule_minmax(x, g, nondivisible="pad")
    ref_lo, ref_hi = brute_force(x, g)
    assert torch.equal(lo, ref_lo) and torch.equal(hi, ref_hi)
    assert lo.shape == g.qparam_shape(tuple(x.shape), nondivisible="pad")


@given(shaped_case())
def test_rows_round_trip_to_the_original_tensor(case: tuple[torch.Tensor, object, bool]) -> None:
    x, g, _ = case
    assert isinstance(g, (PerTensor, PerChannel, PerGroup))
    layout = GranuleLayout.of(tuple(x.shape), g, nondivisible="pad")
    rows = layout.to_rows(x)
    assert rows.shape[0] == math.prod(layout.qparam_shape)
    assert torch.equal(layout.from_rows(rows), x)
    per_row = torch.arange(rows.shape[0], dtype=torch.float32)
    assert torch.equal(layout.qparams_to_rows(layout.rows_to_qparams(per_row)).reshape(-1), per_row)


def test_nan_and_inf_show_up_in_the_granule_range() -> None:
    x = torch.tensor([[1.0, float("nan")], [2.0, 3.0], [float("-inf"), 0.0]])
    lo, hi = granule_minmax(x, PerChannel(0))
    assert torch.isnan(lo[0]) and torch.isnan(hi[0])
    assert torch.isfinite(lo[1]) and lo[2] == float("-inf")


def test_minmax_keeps_the_input_dtype_exactly() -> None:
    x = torch.tensor([0.1, -3.3, 7.7], dtype=torch.bfloat16)
    lo, hi = granule_minmax(x, PerTensor())
    assert lo.dtype == torch.bfloat16 and lo == x[1] and hi == x[2]


def test_padded_last_group_is_reduced_over_its_own_elements() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, -5.0, 9.0])
    lo, hi = granule_minmax(x, PerGroup(0, 2), nondivisible="pad")
    assert lo.tolist() == [1.0, -5.0, 9.0] and hi.tolist() == [2.0, 3.0, 9.0]


def test_half_precision_minmax_in_blocks_equals_the_direct_reduction() -> None:
    # Enough rows for several widening blocks and a partial last one; NaN and inf in two rows.
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.randn(700, 1000, generator=torch.Generator().manual_seed(3)).to(dtype)
        x[5, 7] = float("nan")
        x[650, 0] = float("-inf")
        lo, hi = granule_minmax(x, PerChannel(0))
        assert lo.dtype == hi.dtype == dtype
        ref_lo, ref_hi = torch.amin(x.float(), dim=1).to(dtype), torch.amax(x.float(), dim=1).to(dtype)
        assert torch.allclose(lo, ref_lo, rtol=0, atol=0, equal_nan=True)
        assert torch.allclose(hi, ref_hi, rtol=0, atol=0, equal_nan=True)
        assert lo[5].isnan() and hi[5].isnan() and lo[650] == float("-inf")
