from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mono_quant.cli._errors import InputError
from mono_quant.cli._safetensors import DTYPE_NAMES, StreamingWriter, dtype_from_name, read_safetensors


def test_written_files_load_with_safetensors_itself_including_odd_offsets(tmp_path):
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
    w = StreamingWriter(path, {"k": "v"})
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
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_len % 8 == 0
    assert not (tmp_path / "w.safetensors.data").exists()


def test_abort_removes_everything(tmp_path):
    w = StreamingWriter(tmp_path / "w.safetensors")
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
