"""``asymmetric`` equals torchao 0.18's ``choose_qparams_affine`` + ``quantize_affine`` bit for bit.

The suite (both profiles, every dtype torchao also knows, group sizes, the pad policy,
the fixed edge-case sweep) is :class:`~mono_quant.conformance.differential.TorchaoSuite`.
"""

from __future__ import annotations

import pytest
import torch

from mono_quant.conformance.differential import (
    TorchaoSuite,
    assert_torchao_profile_differs_from_default,
    torchao_reference,
)
from mono_quant.core import MonoQuantError, PerTensor, get_scheme


class TestTorchao(TorchaoSuite):
    schemes = ("asymmetric",)


def test_torchao_profile_differs_from_default_where_torchao_does() -> None:
    assert_torchao_profile_differs_from_default("asymmetric")


def test_torchao_profile_refuses_a_range_that_overflows_float16() -> None:
    """The one place the ``torchao`` profile cannot equal torchao: ``hi - lo`` overflows
    float16, torchao returns an infinite scale (and every code at qmin); QParams must be
    finite, so we raise. The ``default`` profile computes in float32 and is fine."""
    x = torch.tensor([60000.0, -10000.0], dtype=torch.float16)
    ref = torchao_reference(x, PerTensor(), "int8", False, None)[0]
    assert bool(torch.isinf(ref).all())
    with pytest.raises(MonoQuantError):
        get_scheme("asymmetric", profile="torchao").compute_qparams(x, "int8")
    qp = get_scheme("asymmetric").compute_qparams(x, "int8")
    assert qp.scale is not None and torch.equal(qp.scale, torch.tensor(70000.0) / 255)
