"""Sub-byte packing from Packing data: layout, odd sizes, round trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.core import MonoQuantError, Packing, QuantDtype, pack, packed_shape, unpack

I4 = QuantDtype("i4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
U4 = QuantDtype("u4", 4, False, 0, 15, "uint8", packing=Packing(4, 2))
U2_HIGH = QuantDtype("u2", 2, False, 0, 3, "uint8", packing=Packing(2, 4, order="high_first"))
I4_INT32_AXIS0 = QuantDtype(
    "i4c", 4, True, -8, 7, "int8", packing=Packing(4, 8, container="int32", axis=0, offset=8)
)


def test_first_element_goes_in_the_low_nibble_with_the_offset() -> None:
    codes = torch.tensor([[-8, 7, 0, -1]], dtype=torch.int8)
    packed = pack(codes, I4)
    # (-8+8) | (7+8)<<4 = 0xF0 ; (0+8) | (-1+8)<<4 = 0x78
    assert packed.dtype == torch.uint8 and packed.tolist() == [[0xF0, 0x78]]


def test_high_first_order_puts_the_first_element_in_the_top_bits() -> None:
    packed = pack(torch.tensor([3, 0, 1, 2], dtype=torch.uint8), U2_HIGH)
    assert packed.tolist() == [0b11_00_01_10]


def test_int32_container_wraps_to_twos_complement() -> None:
    codes = torch.full((8, 1), 7, dtype=torch.int8)  # every nibble 0xF
    packed = pack(codes, I4_INT32_AXIS0)
    assert packed.dtype == torch.int32 and packed.tolist() == [[-1]]


@st.composite
def codes_for(draw: st.DrawFn, dtype: QuantDtype) -> torch.Tensor:
    assert dtype.qmin is not None and dtype.qmax is not None
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(dtype.qmin, dtype.qmax + 1, shape, generator=gen).to(dtype.torch_dtype)


@pytest.mark.parametrize("dtype", [I4, U4, U2_HIGH, I4_INT32_AXIS0], ids=lambda d: d.name)
@given(data=st.data())
def test_pack_then_unpack_is_the_identity_for_any_shape(dtype: QuantDtype, data: st.DataObject) -> None:
    codes = data.draw(codes_for(dtype))
    packed = pack(codes, dtype)
    assert tuple(packed.shape) == packed_shape(tuple(codes.shape), dtype)
    restored = unpack(packed, dtype, tuple(codes.shape))
    assert restored.dtype == codes.dtype and torch.equal(restored, codes)


def test_odd_lengths_are_padded_with_stored_zeros() -> None:
    packed = pack(torch.tensor([5, 1, 2], dtype=torch.uint8), U4)
    assert packed.tolist() == [0x15, 0x02]


def test_unpack_refuses_a_buffer_of_the_wrong_shape() -> None:
    with pytest.raises(
        MonoQuantError, match=r"must be uint8 of shape \(2, 3\); got torch.uint8 of shape \(2, 2\)"
    ):
        unpack(torch.zeros(2, 2, dtype=torch.uint8), U4, (2, 5))


def test_unpacked_dtypes_pass_through() -> None:
    i8 = QuantDtype("i8", 8, True, -128, 127, "int8")
    codes = torch.tensor([1, -2], dtype=torch.int8)
    assert pack(codes, i8) is codes and unpack(codes, i8, (2,)) is codes


@pytest.mark.parametrize("dtype", [I4, U4], ids=lambda d: d.name)
@given(data=st.data())
def test_nibble_bytes_equal_the_layout_formula(dtype: QuantDtype, data: st.DataObject) -> None:
    codes = data.draw(codes_for(dtype))
    assert dtype.packing is not None
    wide = codes.to(torch.int64) + dtype.packing.offset
    if wide.shape[-1] % 2:
        wide = torch.cat([wide, torch.zeros(*wide.shape[:-1], 1, dtype=torch.int64)], dim=-1)
    expected = wide[..., 0::2] | (wide[..., 1::2] << 4)  # first code in the low nibble
    assert torch.equal(pack(codes, dtype), expected.to(torch.uint8))
