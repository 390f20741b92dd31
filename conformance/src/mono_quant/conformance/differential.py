"""Differential tests: a scheme against torchao and torch.ao, bit for bit, shared by plugin test suites.

The oracles (:func:`torchao_reference`, :func:`torch_ao_reference`), a bit-exactness
assertion (:func:`assert_bitexact`), the MiniLM checkpoint loader (:func:`minilm_weights`)
and test suites a plugin subclasses in its own test file, naming its schemes::

    from mono_quant.conformance.differential import TorchaoSuite

    class TestTorchao(TorchaoSuite):
        schemes = ("symmetric",)

Import :data:`bitexact` and :data:`minilm` into a ``conftest.py`` to get them as fixtures.
torchao is optional: the functions that need it import it when called and skip the
calling test with an install hint when it is missing.
"""

from __future__ import annotations

from mono_quant.conformance._oracles import (
    F32_EPS,
    FIRST_PARTY,
    TORCHAO_DTYPES,
    assert_bitexact,
    bitexact,
    load_hypothesis_profile,
    minilm,
    minilm_weights,
    torch_ao_reference,
    torchao_block_size,
    torchao_reference,
)
from mono_quant.conformance._suites import (
    MiniLMSuite,
    ObserverSuite,
    TorchaoSuite,
    assert_torchao_profile_differs_from_default,
)
from mono_quant.conformance._suites_contract import ErrorSuite, PluginAloneSuite

__all__ = [
    "F32_EPS",
    "FIRST_PARTY",
    "TORCHAO_DTYPES",
    "ErrorSuite",
    "MiniLMSuite",
    "ObserverSuite",
    "PluginAloneSuite",
    "TorchaoSuite",
    "assert_bitexact",
    "assert_torchao_profile_differs_from_default",
    "bitexact",
    "load_hypothesis_profile",
    "minilm",
    "minilm_weights",
    "torch_ao_reference",
    "torchao_block_size",
    "torchao_reference",
]
