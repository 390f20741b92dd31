"""all-MiniLM-L6-v2, every floating 2-D weight, with the int4 schemes' defaults (group 128).

Scale, zero-point and codes equal torchao's; the packed int4 codes, read as int32,
are compressed-tensors' pack-quantized tensor for the same weight.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch

from mono_quant.conformance.differential import F32_EPS, torchao_reference
from mono_quant.core import PerGroup, get_scheme, pack
from mono_quant.int4 import INT4

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

SCHEMES = ["int4-symmetric", "int4-asymmetric"]


@pytest.mark.parametrize("dtype", ["int4", "uint4"])
@pytest.mark.parametrize("name", SCHEMES)
def test_group_128_equals_torchao_on_every_weight(
    name: str, dtype: str, minilm: dict[str, torch.Tensor], bitexact: BitExact
) -> None:
    assert len(minilm) == 40  # 3 embeddings, 6 layers x 6 Linear weights, the pooler
    scheme = get_scheme(name)
    for weight_name, w in minilm.items():
        qp = scheme.compute_qparams(w, dtype, name=weight_name)
        assert qp.granularity == PerGroup(1, 128)
        scale, zero_point, codes = torchao_reference(
            w, PerGroup(1, 128), dtype, scheme.capabilities.symmetric, F32_EPS
        )
        assert qp.scale is not None and qp.zero_point is not None
        bitexact(qp.scale, scale, f"{weight_name} scale")
        bitexact(qp.zero_point, zero_point, f"{weight_name} zero_point")
        bitexact(scheme.quantize(w, qp, name=weight_name), codes, f"{weight_name} codes")


@pytest.mark.skipif(
    sys.byteorder != "little", reason="the int32 view is compressed-tensors' layout on little-endian"
)
def test_packed_codes_are_compressed_tensors_pack_quantized_on_every_weight(
    minilm: dict[str, torch.Tensor],
) -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    scheme = get_scheme("int4-asymmetric")
    for weight_name, w in minilm.items():
        codes = scheme.quantize(w, scheme.compute_qparams(w, name=weight_name), name=weight_name)
        words = pack(codes, INT4).view(torch.int32)  # every input dim here is a multiple of 8
        assert torch.equal(words, pack_to_int32(codes, 4)), weight_name
