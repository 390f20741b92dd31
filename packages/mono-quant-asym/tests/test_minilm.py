"""all-MiniLM-L6-v2, every floating 2-D weight: ``asymmetric`` equals torch.ao and torchao.

int8/uint8 per output channel against torch.ao's per-channel observer (scale,
zero-point) and the decomposed reference quantize (codes); int4/uint4 in groups of
128 along the input axis against torchao, when mono-quant-int4 registers those
dtypes. The checks are :class:`~mono_quant.conformance.differential.MiniLMSuite`.
"""

from __future__ import annotations

from mono_quant.conformance.differential import MiniLMSuite


class TestMiniLM(MiniLMSuite):
    schemes = ("asymmetric",)
