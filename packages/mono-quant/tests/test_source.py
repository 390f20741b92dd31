from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import load_file

from mono_quant.cli._checkpoint import same_bits
from mono_quant.cli._errors import InputError
from mono_quant.cli._source import open_source, source_from_state_dict


def test_a_single_file_lists_tensors_in_file_order_without_loading_them(ckpt, state_dict):
    src = open_source(ckpt)
    assert src.kind == "file"
    assert {i.name: (i.dtype, i.shape) for i in src.infos} == {
        k: (v.dtype, tuple(v.shape)) for k, v in state_dict.items()
    }
    assert src.input_paths == [ckpt]
    assert src.file_bytes == ckpt.stat().st_size


def test_a_sharded_folder_reads_the_index_and_carries_other_files(sharded):
    src = open_source(sharded)
    assert src.kind == "folder"
    assert [s.name for s in src.shards] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert sorted(p.name for p in src.extra_files) == ["config.json", "tokenizer.json"]


def test_an_index_that_lists_a_missing_tensor_is_refused(sharded):
    index = sharded / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"'ghost\.weight'"):
        open_source(sharded)


def test_an_index_that_lists_a_missing_shard_is_refused(sharded):
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(InputError, match=r"model-00002-of-00002\.safetensors, which is missing"):
        open_source(sharded)


def test_a_folder_with_several_unindexed_files_is_ambiguous(tmp_path, ckpt):
    (ckpt.parent / "other.safetensors").write_bytes(ckpt.read_bytes())
    with pytest.raises(InputError, match=r"2 \.safetensors files and no index"):
        open_source(ckpt.parent)


def test_a_pt_state_dict_is_loaded_with_weights_only(tmp_path, state_dict):
    path = tmp_path / "model.pt"
    torch.save(state_dict, path)
    src = open_source(path)
    assert [i.name for i in src.infos] == list(state_dict)
    assert src.input_paths == [path]


class NotATensor:
    """A class pickled into a checkpoint: weights_only=True must refuse it."""


def test_a_pickle_that_needs_code_is_refused_with_an_explanation(tmp_path):
    path = tmp_path / "model.bin"
    torch.save({"w": torch.ones(2), "obj": NotATensor()}, path)
    with pytest.raises(InputError, match=r"was refused: loading it needs .*NotATensor, so it is not a plain"):
        open_source(path)


class Payload:
    """What an attacker pickles: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_with_a_code_payload_is_refused_as_unsafe_not_as_corrupt(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2), "x": Payload()}, path)
    with pytest.raises(InputError) as info:
        open_source(path)
    assert "was refused: loading it needs posix.system" in str(info.value) or "nt.system" in str(info.value)
    assert "could run code" in str(info.value) and "corrupt" not in str(info.value)


def test_a_nested_checkpoint_says_how_to_extract_it(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": OrderedDict(w=torch.ones(2))}, path)
    with pytest.raises(InputError, match=r"extract it first, e.g. torch.save\(ckpt\['state_dict'\]"):
        open_source(path)


def test_a_truncated_pickle_is_called_damaged_not_unsafe(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(
        InputError, match=r"not a readable PyTorch state dict .*; it may be truncated or corrupt"
    ):
        open_source(path)


def test_a_raw_pickle_is_refused_without_a_torch_warning(tmp_path, recwarn):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
    with pytest.raises(InputError, match=r"was refused: it is not a state dict written by torch\.save"):
        open_source(path)
    assert [str(w.message) for w in recwarn] == []


def test_a_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "nope.safetensors")


def test_state_dict_values_must_be_tensors():
    with pytest.raises(InputError, match="'x' is a int"):
        source_from_state_dict({"x": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize("reuse", [False, True])
def test_tensors_are_read_as_safetensors_reads_them(ckpt, reuse):
    shard = open_source(ckpt).shards[0]
    expected = load_file(ckpt)
    with shard.open(reuse=reuse) as reader:
        for info in shard.infos:
            t = reader.get(info.name)
            assert (t.dtype, tuple(t.shape)) == (info.dtype, info.shape)
            assert same_bits(t, expected[info.name]), info.name


def test_a_file_cut_short_during_the_run_names_the_tensor(ckpt):
    shard = open_source(ckpt).shards[0]
    first, last = shard.infos[0].name, shard.infos[-1].name
    expected = load_file(ckpt)[first]
    with shard.open(reuse=True) as reader:
        ckpt.write_bytes(ckpt.read_bytes()[:-100])  # the same file, shorter: as if rewritten meanwhile
        assert same_bits(reader.get(first), expected)
        with pytest.raises(
            InputError, match=rf"'{last}' in .*model\.safetensors cannot be read .*may have changed"
        ):
            reader.get(last)
        with pytest.raises(InputError, match=r"'ghost' is no longer in .*model\.safetensors"):
            reader.get("ghost")


def test_a_file_damaged_after_its_headers_were_read_is_refused_when_opened(ckpt):
    shard = open_source(ckpt).shards[0]
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    with pytest.raises(InputError, match="not a readable safetensors file"), shard.open():
        pass
