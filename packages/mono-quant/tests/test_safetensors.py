from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mono_quant.cli._safetensors as st
from mono_quant.cli._checkpoint import same_bits
from mono_quant.cli._errors import InputError
from mono_quant.cli._safetensors import (
    DTYPE_NAMES,
    StreamingWriter,
    dtype_from_name,
    read_entries,
    read_safetensors,
    read_tensor,
)


def _header_len(path):
    return int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("reserve", [0, 4096])
def test_written_files_load_with_safetensors_itself_including_odd_offsets(tmp_path, reserve):
    tensors = {
        "odd": torch.arange(7, dtype=torch.uint8),  # 7 bytes: what follows is unaligned
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(4).to(torch.bfloat16),
        "scalar": torch.tensor(2.5),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(6, 4).t(),
    }
    path = tmp_path / "w.safetensors"
    w = StreamingWriter(path, {"k": "v"}, reserve=reserve)
    for name, t in tensors.items():
        w.add(name, t)
    size = w.close()
    assert size == path.stat().st_size
    back = load_file(path)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"k": "v"}
        assert list(f.offset_keys()) == list(tensors)  # file order is insertion order
    header_len = _header_len(path)
    assert header_len % 8 == 0
    assert header_len == (reserve or header_len)  # a header that fits fills the reserve exactly
    assert list(tmp_path.iterdir()) == [path]


@pytest.fixture
def copied(monkeypatch):
    """The sizes of every data copy the writer makes (it still makes them)."""
    sizes = []
    real = st._copy

    def spy(src, dst, size):
        sizes.append(size)
        real(src, dst, size)

    monkeypatch.setattr(st, "_copy", spy)
    return sizes


def _tensors(tmp_path, path, reserve=0, n=6):
    w = StreamingWriter(path, {"note": "x" * 200}, reserve=reserve)
    g = torch.Generator().manual_seed(0)
    tensors = {f"t{i}": torch.randn(i + 1, 3, generator=g) for i in range(n)}
    for name, t in tensors.items():
        w.add(name, t)
    return w, tensors


def test_a_header_that_fits_the_reserve_is_written_in_place_and_the_data_is_never_copied(
    tmp_path, monkeypatch
):
    def no_copy(*args):
        raise AssertionError("the data was copied")

    written = 0
    real = st._write_all

    def counting(f, data):
        nonlocal written
        written += len(data)
        real(f, data)

    monkeypatch.setattr(st, "_copy", no_copy)
    monkeypatch.setattr(st, "_write_all", counting)
    path = tmp_path / "w.safetensors"
    w, tensors = _tensors(tmp_path, path, reserve=1001)
    assert w.reserve == 1008  # rounded up: the data starts 8-byte aligned
    size = w.close()
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    assert written == 1008 + data  # every byte written once: the header, then each tensor
    assert size == path.stat().st_size == 8 + 1008 + data
    assert _header_len(path) == 1008
    back = load_file(path)
    assert all(torch.equal(back[k], t) for k, t in tensors.items())
    assert list(tmp_path.iterdir()) == [path]


def test_a_header_larger_than_the_reserve_goes_in_front_of_a_copy_of_the_data(tmp_path, copied):
    small, big = tmp_path / "small.safetensors", tmp_path / "big.safetensors"
    w, tensors = _tensors(tmp_path, small, reserve=64)
    w.close()
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    assert copied == [data]
    w, _ = _tensors(tmp_path, big, reserve=1 << 16)
    w.close()
    assert copied == [data]  # the reserved path did not copy
    assert _header_len(small) < 1 << 16 == _header_len(big)
    for path in (small, big):
        back = load_file(path)
        assert list(back) == list(tensors) and all(torch.equal(back[k], t) for k, t in tensors.items())
        with safe_open(str(path), "pt") as f:
            assert f.metadata() == {"note": "x" * 200}
    assert small.stat().st_size == 8 + _header_len(small) + data
    assert small.read_bytes()[-data:] == big.read_bytes()[-data:]  # the same data, behind either header
    assert sorted(tmp_path.iterdir()) == [big, small]


def test_a_mostly_blank_reserve_on_a_small_file_is_not_kept(tmp_path, copied):
    path = tmp_path / "w.safetensors"
    w, tensors = _tensors(tmp_path, path, reserve=st.MAX_SLACK + 4096)
    w.close()
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    assert data // 1000 < st.MAX_SLACK  # so only the fixed allowance applies
    assert copied == [data]  # written again behind a header of its own size
    assert _header_len(path) < 4096 and path.stat().st_size == 8 + _header_len(path) + data
    back = load_file(path)
    assert all(torch.equal(back[k], t) for k, t in tensors.items())


def test_the_target_is_replaced_only_when_the_file_is_complete(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    w = StreamingWriter(path, reserve=4096)
    w.add("a", torch.ones(3))
    assert path.read_bytes() == b"old"  # a reader of the old file (an mmap) keeps its bytes meanwhile
    w.close()
    assert torch.equal(load_file(path)["a"], torch.ones(3))


def test_a_negative_reserve_is_a_bug(tmp_path):
    with pytest.raises(ValueError, match="reserve must be >= 0 bytes, got -8"):
        StreamingWriter(tmp_path / "w.safetensors", reserve=-8)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reserve", [0, 4096])
def test_abort_removes_everything(tmp_path, reserve):
    (tmp_path / "w.safetensors").write_bytes(b"")  # as atomic_output leaves it
    w = StreamingWriter(tmp_path / "w.safetensors", reserve=reserve)
    w.add("a", torch.ones(3))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_name_written_twice_is_a_bug_not_a_silent_overwrite(tmp_path):
    w = StreamingWriter(tmp_path / "w.safetensors")
    w.add("a", torch.ones(3))
    with pytest.raises(ValueError, match="written twice"):
        w.add("a", torch.ones(3))
    w.abort()


def test_every_dtype_name_round_trips():
    for dtype, name in DTYPE_NAMES.items():
        assert dtype_from_name(name) is dtype


def test_an_unknown_dtype_name_is_an_input_error():
    with pytest.raises(InputError, match="'F4'"):
        dtype_from_name("F4")


def test_reading_a_non_safetensors_file_names_it_and_says_what_to_do(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00" + json.dumps({}).encode())
    with pytest.raises(InputError, match=r"x\.safetensors is not a readable safetensors file .* re-export"):
        read_safetensors(p).__enter__()


# --- reading tensor data ---------------------------------------------------------------------


def _random(dtype, shape, g):
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    raw = torch.randint(0, 256, (math.prod(shape) * dtype.itemsize,), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape)  # any bytes, NaN patterns included: compared bit for bit


def every_dtype(seed=0):
    """Every dtype safetensors and torch share, as a matrix, a 0-d tensor and an empty tensor."""
    g = torch.Generator().manual_seed(seed)
    out = {"odd": torch.arange(7, dtype=torch.uint8)}  # 7 bytes: in our writer's order, the rest is unaligned
    for dtype, name in DTYPE_NAMES.items():
        for shape in [(3, 5), (), (0, 4)]:
            out[f"{name}{list(shape)}"] = _random(dtype, shape, g)
    return out


def _read_all(path):
    with open(path, "rb", buffering=0) as f:
        entries = read_entries(f, path)
        return entries, {name: read_tensor(f, name, e, path) for name, e in entries.items()}


@pytest.mark.parametrize("writer", ["safetensors", "mono-quant"])
def test_the_reader_returns_exactly_what_safetensors_returns(tmp_path, writer):
    tensors = every_dtype()
    path = tmp_path / "all.safetensors"
    if writer == "safetensors":
        save_file(tensors, path)
    else:
        w = StreamingWriter(path, reserve=8192)
        for name, t in tensors.items():
            w.add(name, t)
        w.close()
    entries, got = _read_all(path)
    expected = load_file(path)
    assert set(got) == set(expected) == set(tensors)
    for name, t in expected.items():
        assert same_bits(got[name], t) and same_bits(t, tensors[name]), name
        assert got[name].data_ptr() % 64 == 0  # our own allocation, aligned whatever the file offset
    if writer == "mono-quant":
        assert any(e.begin % 8 for e in entries.values())  # the unaligned case was exercised


def test_reading_into_a_buffer_gives_views_of_it(tmp_path):
    tensors = every_dtype(1)
    path = tmp_path / "all.safetensors"
    save_file(tensors, path)
    with open(path, "rb", buffering=0) as f:
        entries = read_entries(f, path)
        buffer = torch.empty(max(e.nbytes for e in entries.values()), dtype=torch.uint8)
        for name, e in entries.items():
            t = read_tensor(f, name, e, path, buffer=buffer)
            assert t.untyped_storage().data_ptr() == buffer.data_ptr(), name
            assert same_bits(t, tensors[name]), name
        with pytest.raises(ValueError, match="at least 60 bytes"):
            read_tensor(f, "F32[3, 5]", entries["F32[3, 5]"], path, buffer=buffer[:59])


def _file(path, header, data):
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)


def test_an_entry_whose_size_does_not_match_its_shape_names_the_tensor(tmp_path):
    path = tmp_path / "x.safetensors"
    _file(path, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, bytes(16))
    with open(path, "rb", buffering=0) as f:
        entries = read_entries(f, path)
        with pytest.raises(
            InputError,
            match=r"'a' in .*x\.safetensors is F32 \[3\], so 12 bytes, but its header entry spans 16",
        ):
            read_tensor(f, "a", entries["a"], path)


def test_a_file_cut_short_names_the_tensor_and_says_it_may_have_changed(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": torch.ones(4), "b": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:-100])
    with open(path, "rb", buffering=0) as f:
        entries = read_entries(f, path)
        assert torch.equal(read_tensor(f, "a", entries["a"], path), torch.ones(4))
        with pytest.raises(
            InputError, match=r"'b' in .*x\.safetensors cannot be read \(the file ends 100 bytes "
        ):
            read_tensor(f, "b", entries["b"], path)


@pytest.mark.parametrize(
    "header",
    [
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}',
        b'{"a": {"dtype": "F32", "shape": [1]}}',
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]',
        b"[1, 2]",
    ],
)
def test_a_damaged_header_is_an_input_error(tmp_path, header):
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with (
        open(path, "rb", buffering=0) as f,
        pytest.raises(InputError, match=r"x\.safetensors is not a readable"),
    ):
        read_entries(f, path)
