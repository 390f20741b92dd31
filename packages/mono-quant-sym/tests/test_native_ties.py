"""Our codes against the deprecated native ``torch.quantize_per_channel(...).int_repr()``.

The native kernel adds the zero-point before rounding: it rounds
``fp32(fp32(x * (1 / scale)) + zero_point)`` half to even, where we (and torchao,
and the decomposed reference ops) round ``x * (1 / scale)`` and then add the
zero-point. The two agree except where the native sum is an exact tie
(``k + 0.5``) and the two orders pick different neighbours. For ``symmetric`` the
zero-point is 0 (signed) or 128 (uint8): with 0 the orders are the same
computation; with the even 128 an exact tie of ``x / scale`` keeps its parity, so
only near-ties that the float32 addition rounds onto a tie can differ.
"""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import PerChannel, get_scheme

SCHEME = get_scheme("symmetric")
QDTYPES = {"int8": torch.qint8, "uint8": torch.quint8}

pytestmark = pytest.mark.filterwarnings(
    # Only the native quantized tensors are deprecated; these tests exist to compare with them.
    "ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"
)


def native_codes(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: str) -> torch.Tensor:
    return torch.quantize_per_channel(w, scale.double(), zero_point.long(), 0, QDTYPES[dtype]).int_repr()


def tie_masks(
    w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per element: ``x / scale`` is an exact tie; the native sum is an exact tie; the
    float32 addition of the zero-point was inexact."""
    p = w * (1.0 / scale[:, None])  # the product both orders start from
    t = p + zero_point[:, None].to(torch.float32)  # what the native kernel rounds
    inexact = (p.double() + zero_point[:, None].double()) != t.double()
    return p - p.floor() == 0.5, t - t.floor() == 0.5, inexact


def exact_ties(rows: int = 6) -> torch.Tensor:
    """Rows with a power-of-two scale whose every element is an exact tie ``(m + 0.5) * scale``.

    Row ``r`` spans ``[-127.5, 127.5] * 2**-(r + 1)``, so its symmetric scale is exactly
    ``2**-(r + 1)`` and ``x / scale`` is exact.
    """
    m = torch.arange(-128, 127, dtype=torch.float32) + 0.5  # -127.5 .. 126.5
    m = torch.cat([m, torch.tensor([127.5])])
    return torch.stack([m * 2.0 ** -(r + 1) for r in range(rows)])


@pytest.mark.parametrize("dtype", list(QDTYPES))
def test_exact_ties_never_differ_from_native_because_the_zero_point_is_even(dtype: str) -> None:
    w = exact_ties()
    qp = SCHEME.compute_qparams(w, dtype, PerChannel(0))
    assert qp.scale is not None and qp.zero_point is not None
    assert torch.equal(qp.scale, torch.tensor([2.0 ** -(r + 1) for r in range(w.shape[0])]))
    assert set(qp.zero_point.tolist()) == ({0} if dtype == "int8" else {128})
    tie_p, _, _ = tie_masks(w, qp.scale, qp.zero_point)
    assert int(tie_p.sum()) == w.numel()  # every element is an exact tie
    codes = SCHEME.quantize(w, qp)
    assert torch.equal(codes, native_codes(w, qp.scale, qp.zero_point, dtype))


def test_minilm_int8_codes_equal_native_everywhere(minilm: dict[str, torch.Tensor]) -> None:
    """Zero-point 0: adding it first or last is the same computation, ties included."""
    ties = 0
    for name, w in minilm.items():
        qp = SCHEME.compute_qparams(w, "int8", PerChannel(0), name=name)
        assert qp.scale is not None and qp.zero_point is not None
        codes = SCHEME.quantize(w, qp, name=name)
        native = native_codes(w, qp.scale, qp.zero_point, "int8")
        assert torch.equal(codes, native), f"{name}: {int((codes != native).sum())} codes differ"
        ties += int(tie_masks(w, qp.scale, qp.zero_point)[0].sum())
    assert ties > 0  # the checkpoint does hold exact ties, so this compared something


def test_minilm_uint8_codes_differ_from_native_only_on_near_ties_rounded_onto_a_tie(
    minilm: dict[str, torch.Tensor],
) -> None:
    """Zero-point 128 is even, so exact ties agree; the few differences are elements whose
    ``x / scale`` lies within half a float32 ulp of ``x / scale + 128`` from a half-integer."""
    differ = 0
    for name, w in minilm.items():
        qp = SCHEME.compute_qparams(w, "uint8", PerChannel(0), name=name)
        assert qp.scale is not None and qp.zero_point is not None
        codes = SCHEME.quantize(w, qp, name=name)
        native = native_codes(w, qp.scale, qp.zero_point, "uint8")
        mismatch = codes != native
        tie_p, tie_t, inexact = tie_masks(w, qp.scale, qp.zero_point)
        assert not bool((mismatch & tie_p).any()), f"{name}: an exact tie differs with an even zero-point"
        assert bool((tie_t | ~mismatch).all()), f"{name}: a difference where the native sum is no tie"
        assert bool((inexact | ~mismatch).all()), (
            f"{name}: a difference the float32 addition does not explain"
        )
        assert int((codes.int() - native.int()).abs().max()) <= 1  # a tie picks a neighbour
        differ += int(mismatch.sum())
    assert differ > 0  # all-MiniLM-L6-v2 does hit this (141 elements with torch 2.13)
