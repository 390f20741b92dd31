"""all-MiniLM-L6-v2, every floating 2-D weight: ``asymmetric`` equals torch.ao and torchao.

int8/uint8 per output channel against ``PerChannelMinMaxObserver(per_channel_affine)``
(scale, zero-point) and the decomposed reference quantize (codes); int4/uint4 in
groups of 128 along the input axis against torchao (scale, zero-point, codes),
when mono-quant-int4 registers those dtypes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.ao.quantization.fx._decomposed  # registers torch.ops.quantized_decomposed
from torch.ao.quantization.observer import PerChannelMinMaxObserver
from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

from mono_quant.core import PerChannel, PerGroup, get_scheme, list_dtypes

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]

SCHEME = get_scheme("asymmetric")
F32_EPS = torch.finfo(torch.float32).eps
#: torchao's int4/uint4: target dtype for the qparams, codes dtype and range.
#: torch.int4/uint4 exist at runtime but not in torch's stubs.
INT4_ORACLE: dict[str, tuple[torch.dtype, torch.dtype, int | None, int | None]] = {
    "int4": (torch.int4, torch.int8, -8, 7),  # type: ignore[attr-defined]
    "uint4": (torch.uint4, torch.uint4, None, None),  # type: ignore[attr-defined]
}


@pytest.mark.parametrize(
    ("dtype", "ao_dtype", "code_dtype"),
    [
        ("int8", torch.qint8, torch.int8),
        ("uint8", torch.quint8, torch.uint8),
    ],
)
def test_int8_per_channel_equals_torch_ao_on_every_weight(
    minilm: dict[str, torch.Tensor],
    bitexact: BitExact,
    dtype: str,
    ao_dtype: torch.dtype,
    code_dtype: torch.dtype,
) -> None:
    assert len(minilm) == 40  # 3 embeddings, 6 layers x 6 Linear weights, the pooler
    for name, w in minilm.items():
        qp = SCHEME.compute_qparams(w, dtype, PerChannel(0), name=name)
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=ao_dtype, qscheme=torch.per_channel_affine)
        obs(w)
        scale, zero_point = obs.calculate_qparams()
        assert qp.scale is not None and qp.zero_point is not None
        bitexact(qp.scale, scale, f"{name} scale")
        bitexact(qp.zero_point, zero_point, f"{name} zero_point")
        codes = torch.ops.quantized_decomposed.quantize_per_channel(
            w, scale, zero_point, 0, obs.quant_min, obs.quant_max, code_dtype
        )
        bitexact(SCHEME.quantize(w, qp, name=name), codes, f"{name} codes")


@pytest.mark.parametrize("dtype", list(INT4_ORACLE))
def test_int4_group_128_equals_torchao_on_every_weight(
    minilm: dict[str, torch.Tensor], bitexact: BitExact, dtype: str
) -> None:
    if dtype not in list_dtypes():
        pytest.skip(f"{dtype!r} is not registered: mono-quant-int4 is not installed")
    target, out_dtype, *qrange = INT4_ORACLE[dtype]
    for name, w in minilm.items():
        qp = SCHEME.compute_qparams(w, dtype, PerGroup(-1, 128), name=name)
        block = (1, 128)
        scale, zero_point = choose_qparams_affine(
            w, MappingType.ASYMMETRIC, block, target, *qrange, eps=F32_EPS
        )
        codes = quantize_affine(w, block, scale, zero_point, out_dtype, *qrange)
        assert qp.scale is not None and qp.zero_point is not None
        assert tuple(qp.scale.shape) == (w.shape[0], w.shape[1] // 128)
        bitexact(qp.scale, scale, f"{name} scale")
        bitexact(qp.zero_point, zero_point, f"{name} zero_point")
        bitexact(SCHEME.quantize(w, qp, name=name), codes, f"{name} codes")
