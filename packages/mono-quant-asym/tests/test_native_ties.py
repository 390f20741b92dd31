"""Our codes against the deprecated native ``torch.quantize_per_channel(...).int_repr()``.

The native kernel adds the zero-point before rounding: it rounds
``t = fp32(fp32(x * (1 / scale)) + zero_point)`` half to even, where we (and
torchao, and PyTorch's decomposed reference ops) round ``p = x * (1 / scale)`` and
then add the zero-point. The orders agree except where ``t`` is an exact tie
(``k + 0.5``):

- ``p`` itself is an exact tie: the orders differ exactly when the zero-point is
  odd (adding an odd integer flips which neighbour is even);
- ``p`` is within half a float32 ulp of ``t`` from a half-integer: the float32
  addition rounds it onto the tie, and the native kernel rounds that tie to even.

Nowhere else. Both effects show on all-MiniLM-L6-v2 (torch 2.13, x86): int8
per-channel asymmetric differs from the native kernel on 177 of 22.7M weights,
154 exact ties with an odd zero-point and 23 ties made by the addition.
"""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import PerChannel, get_scheme

SCHEME = get_scheme("asymmetric")
QDTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
EMBEDDINGS = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight")

pytestmark = pytest.mark.filterwarnings(
    # Only the native quantized tensors are deprecated; these tests exist to compare with them.
    "ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"
)


def native_codes(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: str) -> torch.Tensor:
    return torch.quantize_per_channel(w, scale.double(), zero_point.long(), 0, QDTYPES[dtype]).int_repr()


class Ties:
    """Where the two orders can disagree, per element of a per-channel (axis 0) 2-D tensor."""

    def __init__(self, w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: str) -> None:
        p = w * (1.0 / scale[:, None])  # the product both orders start from
        t = p + zero_point[:, None].to(torch.float32)  # what the native kernel rounds
        qmin, qmax = RANGES[dtype]
        #: ``x / scale`` is an exact tie.
        self.exact = p - p.floor() == 0.5
        #: The native sum is an exact tie.
        self.native = t - t.floor() == 0.5
        #: The float32 addition of the zero-point rounded (so it can land on a tie).
        self.inexact = (p.double() + zero_point[:, None].double()) != t.double()
        #: Both neighbours of ``t`` are codes (a clamp cannot hide a difference).
        self.inside = (t.floor() >= qmin) & (t.ceil() <= qmax)
        self.odd = (zero_point % 2 != 0)[:, None].expand_as(p)


def exact_ties(dtype: str) -> tuple[torch.Tensor, list[int]]:
    """Rows of exact ties with scale ``2**-4`` and zero-points ``qmin + a`` for a = 1..254.

    Row ``a`` spans ``[-a, 255 - a] * 2**-4``, so its asymmetric scale is exactly
    ``2**-4`` and its zero-point ``qmin + a``; its elements are ``(m + 0.5) * 2**-4``
    for every ``m`` in the row's range, so every ``x / scale`` is an exact tie.
    Odd and even zero-points alternate.
    """
    qmin = RANGES[dtype][0]
    scale = 2.0**-4
    rows = []
    for a in range(1, 255):
        m = torch.arange(-a, 255 - a, dtype=torch.float32) + 0.5
        rows.append(torch.cat([torch.tensor([-a, 255 - a], dtype=torch.float32), m]) * scale)
    return torch.stack(rows), [qmin + a for a in range(1, 255)]


@pytest.mark.parametrize("dtype", list(QDTYPES))
def test_constructed_exact_ties_differ_from_native_exactly_where_the_zero_point_is_odd(dtype: str) -> None:
    w, zero_points = exact_ties(dtype)
    qp = SCHEME.compute_qparams(w, dtype, PerChannel(0))
    assert qp.scale is not None and qp.zero_point is not None
    assert bool((qp.scale == 2.0**-4).all())
    assert qp.zero_point.tolist() == zero_points
    codes = SCHEME.quantize(w, qp)
    mismatch = codes != native_codes(w, qp.scale, qp.zero_point, dtype)
    ties = Ties(w, qp.scale, qp.zero_point, dtype)
    assert not bool(ties.inexact.any())  # constructed so the addition is exact: only the odd rule acts
    expected = ties.exact & ties.odd & ties.inside
    assert torch.equal(mismatch, expected)
    assert int(expected.sum()) > 10_000  # half the rows' ties
    assert bool((ties.exact & ~ties.odd).any())  # even rows hold ties too, and they agree


@pytest.mark.parametrize("dtype", list(QDTYPES))
def test_minilm_codes_differ_from_native_only_on_ties(dtype: str, minilm: dict[str, torch.Tensor]) -> None:
    """Every 2-D weight: (1) no difference where the native sum is not a tie; (2) an exact
    tie of ``x / scale`` differs iff the zero-point is odd; (3) every other difference is a
    tie made by the float32 addition."""
    counts = {"odd-zero-point ties": 0, "ties made by the addition": 0}
    embedding_ties = 0
    for name, w in minilm.items():
        qp = SCHEME.compute_qparams(w, dtype, PerChannel(0), name=name)
        assert qp.scale is not None and qp.zero_point is not None
        codes = SCHEME.quantize(w, qp, name=name)
        mismatch = codes != native_codes(w, qp.scale, qp.zero_point, dtype)
        ties = Ties(w, qp.scale, qp.zero_point, dtype)
        assert bool((ties.native | ~mismatch).all()), f"{name}: a difference where the native sum is no tie"
        assert torch.equal(mismatch & ties.exact, ties.exact & ties.odd & ties.inside), name
        assert bool((ties.inexact | ties.exact | ~mismatch).all()), f"{name}: an unexplained difference"
        counts["odd-zero-point ties"] += int((mismatch & ties.exact).sum())
        counts["ties made by the addition"] += int((mismatch & ~ties.exact).sum())
        if name in EMBEDDINGS:
            embedding_ties += int((mismatch & ties.exact).sum())
    assert embedding_ties > 0, counts  # the embedding matrices show the odd-zero-point effect
    assert counts["ties made by the addition"] > 0, counts
