"""``symmetric`` equals torchao 0.18's ``choose_qparams_affine`` + ``quantize_affine`` bit for bit.

The suite (both profiles, every dtype torchao also knows, group sizes, the pad policy,
the fixed edge-case sweep) is :class:`~mono_quant.conformance.differential.TorchaoSuite`.
"""

from __future__ import annotations

from mono_quant.conformance.differential import TorchaoSuite, assert_torchao_profile_differs_from_default


class TestTorchao(TorchaoSuite):
    schemes = ("symmetric",)


def test_torchao_profile_differs_from_default_where_torchao_does() -> None:
    assert_torchao_profile_differs_from_default("symmetric")
