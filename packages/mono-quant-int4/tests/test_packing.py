"""Nibble packing of int4/uint4: round trips, the byte layout, and compressed-tensors' layout.

compressed-tensors' pack-quantized format stores 4-bit weights as int32 words, eight
codes per word, the first in the lowest bits, each stored as ``code + 8``; a row
that is not a multiple of 8 long is padded with stored zeros. Our packed int4
buffer is two codes per byte, low nibble first, ``+8``: read as little-endian
int32 (after padding a row to whole words) it is that format. We prove it with
compressed-tensors' own ``pack_to_int32`` / ``unpack_from_int32``.
"""

from __future__ import annotations

import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mono_quant.conformance import strategies as mqst
from mono_quant.core import (
    Granularity,
    MonoQuantError,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    dequantize,
    get_scheme,
    pack,
    packed_shape,
    quantize,
    unpack,
)
from mono_quant.int4 import INT4, UINT4

ENTRIES = {"int4": INT4, "uint4": UINT4}

little_endian = pytest.mark.skipif(
    sys.byteorder != "little",
    reason="the int32 view of packed bytes is compressed-tensors' layout on little-endian",
)


def random_codes(shape: tuple[int, ...], dtype: QuantDtype, seed: int) -> torch.Tensor:
    assert dtype.qmin is not None and dtype.qmax is not None
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(dtype.qmin, dtype.qmax + 1, shape, generator=gen).to(dtype.torch_dtype)


def as_int32_words(packed: torch.Tensor) -> torch.Tensor:
    """Packed bytes (rows along the last axis) as int32 words, padding each row to whole words."""
    pad = (-packed.shape[-1]) % 4
    if pad:
        packed = torch.nn.functional.pad(packed, (0, pad))
    return packed.contiguous().view(torch.int32)


@given(
    name=st.sampled_from(list(ENTRIES)),
    shape=mqst.shapes(min_dims=1, max_dims=4, max_side=9),
    seed=st.integers(0, 2**31 - 1),
    noncontiguous=st.booleans(),
)
def test_unpack_of_pack_returns_the_codes_for_any_shape(
    name: str, shape: tuple[int, ...], seed: int, noncontiguous: bool
) -> None:
    dtype = ENTRIES[name]
    codes = random_codes(shape, dtype, seed)
    if noncontiguous:
        codes = codes.transpose(0, -1).contiguous().transpose(0, -1)  # same values, strided
    packed = pack(codes, dtype)
    expected_shape = shape[:-1] + ((shape[-1] + 1) // 2,)
    assert packed.dtype == torch.uint8
    assert tuple(packed.shape) == packed_shape(shape, dtype) == expected_shape
    assert torch.equal(unpack(packed, dtype, shape), codes)


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 5), (3, 1, 7), (2, 2, 3, 9)], ids=str)
@pytest.mark.parametrize("name", list(ENTRIES))
def test_odd_lengths_pad_one_stored_zero_nibble_and_unpack_exactly(name: str, shape: tuple[int, ...]) -> None:
    dtype = ENTRIES[name]
    codes = random_codes(shape, dtype, seed=len(shape))
    packed = pack(codes, dtype)
    assert packed.shape[-1] == (shape[-1] + 1) // 2
    assert bool((packed[..., -1] >> 4 == 0).all())  # the padding nibble is a stored 0
    assert torch.equal(unpack(packed, dtype, shape), codes)


@pytest.mark.parametrize(
    ("name", "codes", "stored"),
    [
        ("int4", [-8, 7, 0, -1, 3], [0xF0, 0x78, 0x0B]),
        ("uint4", [0, 15, 1, 8, 14], [0xF0, 0x81, 0x0E]),
    ],
)
def test_first_code_sits_in_the_low_nibble_stored_with_the_offset(
    name: str, codes: list[int], stored: list[int]
) -> None:
    """The table in docs/schemes/int4.md: byte = (c0 + off) | (c1 + off) << 4."""
    dtype = ENTRIES[name]
    packed = pack(torch.tensor(codes, dtype=dtype.torch_dtype), dtype)
    assert packed.tolist() == stored


@little_endian
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 70),
    experts=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_int4_buffer_as_little_endian_int32_is_compressed_tensors_pack_quantized(
    rows: int, cols: int, experts: int | None, seed: int
) -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32

    shape = (rows, cols) if experts is None else (experts, rows, cols)  # 3-D: stacked (MoE) weights
    codes = random_codes(shape, INT4, seed)
    words = as_int32_words(pack(codes, INT4))
    assert torch.equal(words, pack_to_int32(codes, 4))
    assert torch.equal(unpack_from_int32(words, 4, torch.Size(shape)), codes)


@little_endian
def test_int4_scheme_codes_packed_load_in_compressed_tensors() -> None:
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    scheme = get_scheme("int4-asymmetric")
    w = mqst.make_tensor((6, 256), kind="normal", seed=5)
    qp = scheme.compute_qparams(w)
    codes = scheme.quantize(w, qp)
    words = as_int32_words(pack(codes, INT4))
    assert words.shape == (6, 32) and words.dtype == torch.int32
    assert torch.equal(unpack_from_int32(words, 4, w.shape), codes)


@little_endian
@given(rows=st.integers(1, 6), cols=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_uint4_buffer_reads_in_compressed_tensors_as_the_codes_minus_8(
    rows: int, cols: int, seed: int
) -> None:
    """compressed-tensors packs signed codes only (always ``+8``): our uint4 bytes are its
    bytes for ``u - 8``, so it reads a uint4 buffer back as ``u - 8`` (with zero-point - 8)."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32

    u = random_codes((rows, cols), UINT4, seed)
    signed = (u.to(torch.int16) - 8).to(torch.int8)
    assert torch.equal(pack(u, UINT4), pack(signed, INT4))
    words = as_int32_words(pack(u, UINT4))
    assert torch.equal(words, pack_to_int32(signed, 4))
    assert torch.equal(unpack_from_int32(words, 4, torch.Size((rows, cols))), signed)


@pytest.mark.parametrize("name", ["int4", "uint4"])
@pytest.mark.parametrize(
    ("shape", "granularity"),
    [((6, 256), PerGroup(-1, 128)), ((4, 3, 8), PerChannel(0)), ((10,), PerTensor()), ((5, 7), PerTensor())],
    ids=str,
)
def test_quantize_with_pack_equals_pack_of_the_codes(
    name: str, shape: tuple[int, ...], granularity: Granularity
) -> None:
    """``quantize(..., pack=True)`` and ``quantize_tensor(..., pack=True)`` pack inside the
    quantize loop where the layout allows; the bytes must be ``pack`` of the codes."""
    dtype = ENTRIES[name]
    scheme = get_scheme("int4-asymmetric")
    x = mqst.make_tensor(shape, kind="normal", seed=7)
    packed, qp = scheme.quantize_tensor(x, name, granularity, pack=True)
    expected = pack(quantize(x, qp), dtype)
    assert torch.equal(packed, expected)
    assert torch.equal(quantize(x, qp, pack=True), expected)


@pytest.mark.parametrize("name", ["int4", "uint4"])
@pytest.mark.parametrize(
    ("shape", "granularity"),
    [
        ((6, 256), PerGroup(-1, 128)),
        ((300, 1024), PerGroup(-1, 128)),
        ((4, 3, 8), PerChannel(0)),
        ((8, 6), PerChannel(1)),
        ((5, 7), PerTensor()),
        ((4,), PerChannel(0)),
    ],
    ids=str,
)
def test_dequantize_of_the_packed_storage_equals_dequantize_of_the_codes(
    name: str, shape: tuple[int, ...], granularity: Granularity
) -> None:
    """``dequantize(packed, qp, shape=...)`` unpacks inside the loop where the layout allows."""
    scheme = get_scheme("int4-asymmetric")
    x = mqst.make_tensor(shape, kind="normal", seed=9)
    packed, qp = scheme.quantize_tensor(x, name, granularity, pack=True)
    expected = dequantize(quantize(x, qp), qp)
    assert torch.equal(dequantize(packed, qp, shape=shape), expected)
    buffer = torch.full(shape, float("nan"))
    assert dequantize(packed, qp, shape=torch.Size(shape), out=buffer) is buffer
    assert torch.equal(buffer, expected)
    if len(shape) == 2:  # a non-contiguous buffer is filled too
        strided = torch.full(shape[::-1], float("nan")).t()
        assert dequantize(packed, qp, shape=shape, out=strided) is strided
        assert torch.equal(strided, expected)


def test_dequantize_of_a_packed_buffer_that_does_not_fit_raises() -> None:
    scheme = get_scheme("int4-asymmetric")
    packed, qp = scheme.quantize_tensor(torch.randn(4, 128), "int4", pack=True)
    expected = r"must be uint8 of shape \(4, 64\); got torch.uint8 of shape \(4, 32\)"
    with pytest.raises(MonoQuantError, match=expected):
        dequantize(packed[:, :32], qp, shape=(4, 128))
    with pytest.raises(MonoQuantError, match=r"out must be a torch.float32 tensor of shape \(4, 128\)"):
        dequantize(packed, qp, shape=(4, 128), out=torch.empty(4, 127))


def test_quantize_with_pack_on_a_1d_tensor_per_channel() -> None:
    """Rows of length 1: a byte must not pair codes of two channels (a regression test)."""
    scheme = get_scheme("int4-symmetric")
    x = torch.tensor([0.5, -1.0, 0.25, 2.0])
    packed, qp = scheme.quantize_tensor(x, "int4", PerChannel(0), pack=True)
    assert torch.equal(packed, pack(quantize(x, qp), INT4))


@pytest.mark.parametrize(
    ("packed", "fact"),
    [
        (torch.zeros(2, 2, dtype=torch.uint8), "got torch.uint8 of shape (2, 2)"),
        (torch.zeros(2, 3, dtype=torch.int32), "got torch.int32 of shape (2, 3)"),
    ],
    ids=["shape", "dtype"],
)
def test_unpack_of_a_buffer_that_does_not_fit_raises_with_both_shapes(
    packed: torch.Tensor, fact: str
) -> None:
    with pytest.raises(MonoQuantError) as info:
        unpack(packed, INT4, (2, 5))
    msg = str(info.value)
    assert "packed 'int4' codes for shape (2, 5) must be uint8 of shape (2, 3)" in msg
    assert fact in msg


def test_pack_of_a_0d_tensor_raises() -> None:
    with pytest.raises(MonoQuantError, match=r"cannot pack a 0-d tensor of 'int4' codes"):
        pack(torch.tensor(3, dtype=torch.int8), INT4)
