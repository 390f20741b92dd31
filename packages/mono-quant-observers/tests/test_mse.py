"""mse equals a transcription of llm-compressor's MSE observer, run on torch.ao's qparams formula.

torch.ao has no MSE observer. The reference below is llm-compressor's
``MovingAverageMSEObserver`` (``calculate_mse_min_max``, then its moving average),
line for line, with two substitutions so it speaks our conventions: candidate
qparams come from torch.ao's ``_calculate_qparams`` (compressed-tensors' formula
rounds the zero-point differently) and fake quantization is the decomposed
``clamp(round(x * (1/scale)) + zp) -> (q - zp) * scale``. One deliberate
difference: when no candidate's error is finite, llm-compressor keeps its initial
``[1, 0]``; we keep the full range (see ``test_overflowing_errors_keep_the_full_range``).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import observer as ao

from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import PerChannel, PerTensor, UnsupportedOptionError, get_dtype, get_scheme
from mono_quant.observers import MSEObserver


def reference(
    batches: list[torch.Tensor],
    *,
    dtype: str,
    symmetric: bool,
    axis: int | None,
    grid: int = 100,
    maxshrink: float = 0.2,
    patience: int = 5,
    norm: float = 2.0,
    averaging_constant: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    qd = get_dtype(dtype)
    assert qd.qmin is not None and qd.qmax is not None
    ao_dtype = torch.qint8 if qd.signed else torch.quint8
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    formula: Any = ao.PerChannelMinMaxObserver(dtype=ao_dtype, qscheme=qscheme)
    running_min = running_max = None
    for batch in batches:
        observed = (
            batch.reshape(1, -1) if axis is None else batch.movedim(axis, 0).reshape(batch.shape[axis], -1)
        )
        absolute_min_val = torch.amin(observed, dim=1)
        absolute_max_val = torch.amax(observed, dim=1)
        best = torch.full_like(absolute_min_val, torch.finfo(absolute_min_val.dtype).max)
        min_val = torch.ones_like(absolute_min_val)
        max_val = torch.zeros_like(absolute_max_val)
        no_improve_count = 0
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            shrinked_min_val = p * absolute_min_val
            shrinked_max_val = p * absolute_max_val
            scale, zero_point = formula._calculate_qparams(shrinked_min_val, shrinked_max_val)
            scale, zero_point = scale[:, None], zero_point[:, None].float()
            q = torch.clamp(torch.round(observed * (1.0 / scale)) + zero_point, qd.qmin, qd.qmax)
            q = (q - zero_point) * scale
            q -= observed
            q.abs_()
            q = q.square() if norm == 2.0 else q.pow(norm)
            err = torch.sum(q, dim=1)
            tmp = err < best
            if torch.any(tmp):
                best[tmp] = err[tmp]
                min_val[tmp] = shrinked_min_val[tmp]
                max_val[tmp] = shrinked_max_val[tmp]
                no_improve_count = 0
            else:
                no_improve_count += 1
                if no_improve_count >= patience:
                    break
        if running_min is None or running_max is None:
            running_min, running_max = min_val, max_val
        else:
            running_min = running_min + averaging_constant * (min_val - running_min)
            running_max = running_max + averaging_constant * (max_val - running_max)
    assert running_min is not None and running_max is not None
    return running_min, running_max


def check(batches: list[torch.Tensor], dtype: str, symmetric: bool, axis: int | None, **options: Any) -> None:
    obs = MSEObserver(
        PerTensor() if axis is None else PerChannel(axis), dtype=dtype, symmetric=symmetric, **options
    )
    for b in batches:
        obs.observe(b)
    scheme = get_scheme("symmetric" if symmetric else "asymmetric")
    lo, hi = obs.compute_range(get_dtype(dtype), scheme)
    want_lo, want_hi = reference(batches, dtype=dtype, symmetric=symmetric, axis=axis, **options)
    what = f"{dtype} symmetric={symmetric} axis={axis} {options}"
    assert torch.equal(lo.reshape(-1), want_lo), f"lo {what}: {lo.tolist()} vs {want_lo.tolist()}"
    assert torch.equal(hi.reshape(-1), want_hi), f"hi {what}: {hi.tolist()} vs {want_hi.tolist()}"
    qp = obs.qparams(scheme, dtype)
    direct = scheme.qparams_from_range(lo, hi, get_dtype(dtype))
    assert qp.scale is not None and torch.equal(qp.scale, direct[0])


@st.composite
def batch_lists(draw: st.DrawFn) -> list[torch.Tensor]:
    n, seed = draw(st.integers(1, 3), label="batches"), draw(st.integers(0, 2**16))
    kinds = ("normal", "outlier", "uniform", "positive", "negative", "constant")
    return [
        make_tensor((draw(st.integers(1, 6)), 8, 3), kind=draw(st.sampled_from(kinds)), seed=seed + i)
        * draw(st.sampled_from((0.01, 1.0, 100.0)))
        for i in range(n)
    ]


@settings(max_examples=20)
@given(
    batches=batch_lists(),
    target=st.sampled_from([("int8", False), ("uint8", False), ("int8", True), ("uint8", True)]),
    axis=st.sampled_from((None, -1)),
    options=st.sampled_from(
        [{}, {"norm": 2.4}, {"averaging_constant": 0.5, "patience": 2}, {"grid": 20, "maxshrink": 0.5}]
    ),
)
def test_drawn_batches_equal_the_llm_compressor_transcription(
    batches: list[torch.Tensor], target: tuple[str, bool], axis: int | None, options: dict[str, Any]
) -> None:
    check(batches, target[0], target[1], axis, **options)


@pytest.mark.parametrize(
    "batches",
    [
        [torch.cat([torch.linspace(-1, 1, 999), torch.tensor([40.0])])],  # one outlier: clipped
        [torch.full((4, 3), 7.0), torch.full((2, 3), 7.0)],  # constant
        [torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) + 50.0],  # far from 0
        [-torch.rand(16, 3, generator=torch.Generator().manual_seed(1)) - 2.0],  # all negative
    ],
    ids=["outlier", "constant", "not-centred", "negative"],
)
def test_edge_cases_equal_the_transcription(batches: list[torch.Tensor]) -> None:
    for dtype, symmetric in (("int8", False), ("uint8", True)):
        check(batches, dtype, symmetric, None)


def test_an_outlier_is_clipped_and_the_error_is_lower_than_minmax() -> None:
    x = torch.cat([torch.linspace(-1, 1, 9999), torch.tensor([40.0])])
    scheme = get_scheme("symmetric")
    obs = MSEObserver(symmetric=True)
    obs.observe(x)
    qp = obs.qparams(scheme, "int8")
    full = scheme.compute_qparams(x, "int8")
    assert qp.scale is not None and full.scale is not None and qp.scale < full.scale

    def error(q: Any) -> float:
        from mono_quant.core import dequantize, quantize

        return float(((dequantize(quantize(x, q), q) - x) ** 2).sum())

    assert error(qp) < error(full)


def test_overflowing_errors_keep_the_full_range() -> None:
    # Errors of 1e30 squared overflow float32: no candidate is "better" than the start.
    x = torch.tensor([-3e30, 1e30, 2e30])
    obs = MSEObserver()
    obs.observe(x)
    lo, hi = obs.compute_range(get_dtype("int8"), get_scheme("asymmetric"))
    assert (lo.item(), hi.item()) == (x.min().item(), x.max().item())


def test_qparams_for_another_target_than_searched_are_refused() -> None:
    obs = MSEObserver(dtype="int8", symmetric=False)
    obs.observe(torch.randn(10))
    with pytest.raises(
        UnsupportedOptionError, match=r"searched clipping ranges for asymmetric int8; .*'symmetric'"
    ):
        obs.qparams(get_scheme("symmetric"), "int8")
    with pytest.raises(UnsupportedOptionError, match=r"with dtype 'uint8'\. Create it with dtype='uint8'"):
        obs.qparams(get_scheme("asymmetric"), "uint8")
    with pytest.raises(UnsupportedOptionError, match="dtype must name a registered affine integer dtype"):
        MSEObserver(dtype="float16")
