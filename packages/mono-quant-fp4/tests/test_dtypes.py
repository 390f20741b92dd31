"""The mxfp4/nvfp4 entries, and E2M1 rounding and packing against torchao's and compressed-tensors' own code.

Core rounds ``x / scale`` to E2M1 from the dtype's data (2 exponent bits, 1
mantissa bit, max 6, no inf/NaN). torchao's ``f32_to_f4_unpacked`` (bit
arithmetic) and compressed-tensors' ``cast_to_fp4`` + ``pack_fp4_to_uint8``
(thresholds) are independent implementations of the same rule.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import (
    QuantDtype,
    decode_float_codes,
    encode_float_codes,
    float_code_values,
    get_dtype,
    pack,
    unpack,
)
from mono_quant.fp4 import E2M1_PACKING, MXFP4, NVFP4

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ao_kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    ct_fp4 = pytest.importorskip("compressed_tensors.compressors.nvfp4.helpers")
    from compressed_tensors.quantization.utils.fp4_utils import cast_to_fp4


def test_entries_are_e2m1_codes_packed_two_per_byte_with_their_scale_storage() -> None:
    for entry, scale_dtype in ((MXFP4, "float8_e8m0fnu"), (NVFP4, "float8_e4m3fn")):
        assert get_dtype(entry.name) == entry
        assert entry.is_float_code and not entry.is_float and entry.kind == "float_code"
        assert (entry.bits, entry.exponent_bits, entry.mantissa_bits, entry.max_value) == (4, 2, 1, 6.0)
        assert (entry.has_inf, entry.has_nan, entry.scale_dtype) == (False, False, scale_dtype)
        assert entry.torch_dtype == torch.uint8 and entry.packing == E2M1_PACKING
        assert QuantDtype.from_dict(entry.to_dict()) == entry
    assert float_code_values(MXFP4).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def edge_values() -> torch.Tensor:
    """Every E2M1 value, every midpoint, one float32 ulp either side of each, and beyond ±6."""
    values = float_code_values(MXFP4)
    mids = (values[1:] + values[:-1]) / 2
    pts = torch.cat([values, mids, torch.tensor([6.5, 7.0, 100.0, 3.0e38, 1e-30, 2.0**-149])])
    near = torch.cat([torch.nextafter(pts, torch.tensor(0.0)), torch.nextafter(pts, torch.tensor(1e39))])
    both = torch.cat([pts, near])
    return torch.cat([both, -both])


def test_rounding_equals_torchao_bit_level_conversion_everywhere_that_matters() -> None:
    y = edge_values()
    ours = encode_float_codes(y, MXFP4)
    theirs = ao_kernels.f32_to_f4_unpacked(y)
    mismatches = int((ours != theirs).sum())
    assert (mismatches, y.numel()) == (0, 126)


def test_rounding_equals_compressed_tensors_cast_and_pack_apart_from_the_sign_of_zero() -> None:
    y = edge_values().clamp(-6.0, 6.0)
    theirs = ct_fp4.pack_fp4_to_uint8(cast_to_fp4(y.clone()).reshape(1, -1))
    ours = pack(encode_float_codes(y, MXFP4, negative_zero=False), MXFP4).reshape(1, -1)
    assert int((ours != theirs).sum()) == 0
    # torchao (and an IEEE cast) keep the sign of -0.0; compressed-tensors' torch.sign drops it.
    signed = encode_float_codes(torch.tensor([-0.0, 0.0, -0.1]), MXFP4)
    assert signed.tolist() == [0x8, 0x0, 0x8]


@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=2, max_size=64).filter(lambda v: len(v) % 2 == 0))
def test_any_value_rounds_and_packs_as_torchao_and_compressed_tensors(values: list[float]) -> None:
    y = torch.tensor(values, dtype=torch.float32)
    ours = encode_float_codes(y, MXFP4)
    assert torch.equal(ours, ao_kernels.f32_to_f4_unpacked(y))
    packed = pack(ours, MXFP4)
    assert torch.equal(packed, ao_kernels.pack_uint4(ours))
    ct = ct_fp4.pack_fp4_to_uint8(cast_to_fp4(y.clamp(-6, 6) + 0.0).reshape(1, -1)).reshape(-1)
    assert torch.equal(pack(encode_float_codes(y, MXFP4, negative_zero=False), MXFP4), ct)
    back = decode_float_codes(unpack(packed, MXFP4, tuple(y.shape)), MXFP4)
    ct_back = ct_fp4.unpack_fp4_from_uint8(packed.reshape(1, -1), 1, y.numel(), dtype=torch.float32)
    assert torch.equal(back.view(torch.int32), ct_back.reshape(-1).view(torch.int32))  # -0.0 included


def test_every_code_decodes_as_torchao_and_compressed_tensors() -> None:
    codes = torch.arange(16, dtype=torch.uint8)
    ours = decode_float_codes(codes, NVFP4)
    assert torch.equal(ours.view(torch.int32), ao_kernels.f4_unpacked_to_f32(codes).view(torch.int32))
    ct = ct_fp4.unpack_fp4_from_uint8(ao_kernels.pack_uint4(codes).reshape(1, 8), 1, 16, dtype=torch.float32)
    assert torch.equal(ours.view(torch.int32), ct.reshape(-1).view(torch.int32))
    assert ours.tolist()[8:] == [-0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
