"""Streaming: one input tensor in memory at a time, so peak memory follows the largest tensor."""

from __future__ import annotations

import weakref

import torch
from safetensors.torch import save_file

from mono_quant.cli import load_quantized, quantize_checkpoint, quantize_state_dict
from mono_quant.cli._checkpoint import QuantizedCheckpoint, same_bits
from mono_quant.cli._plan import make_plan
from mono_quant.cli._sinks import MemorySink
from mono_quant.cli._source import _SafetensorsReader, open_source
from mono_quant.cli._stream import run


def test_at_most_one_input_tensor_is_alive_at_any_time(tmp_path, monkeypatch):
    tensors = {f"layer.{i}.weight": torch.randn(32, 64) for i in range(12)}
    tensors |= {f"layer.{i}.bias": torch.randn(32) for i in range(12)}
    save_file(tensors, tmp_path / "in.safetensors")
    alive = 0
    peak = 0
    loaded = 0
    original = _SafetensorsReader.get

    def counting_get(self, name):
        nonlocal alive, peak, loaded
        t = original(self, name)
        alive += 1
        loaded += 1
        peak = max(peak, alive)

        def gone() -> None:
            nonlocal alive
            alive -= 1

        weakref.finalize(t, gone)
        return t

    monkeypatch.setattr(_SafetensorsReader, "get", counting_get)
    quantize_checkpoint(
        tmp_path / "in.safetensors", tmp_path / "out.safetensors", scheme="int4-symmetric", group_size=32
    )
    assert loaded == len(tensors)
    assert peak == 1


def _storages(monkeypatch):
    """Spy on the reader: the storage address of every tensor read, each kept alive to the end."""
    kept: list[torch.Tensor] = []
    original = _SafetensorsReader.get

    def keeping_get(self, name):
        t = original(self, name)
        kept.append(t)
        return t

    monkeypatch.setattr(_SafetensorsReader, "get", keeping_get)
    return kept


def test_file_output_reads_every_tensor_into_one_buffer(ckpt, state_dict, tmp_path, monkeypatch):
    kept = _storages(monkeypatch)
    quantize_checkpoint(ckpt, tmp_path / "q.safetensors", scheme="asymmetric")
    assert len(kept) == len(state_dict)
    assert len({t.untyped_storage().data_ptr() for t in kept}) == 1  # one buffer, read into again and again
    # Each tensor was written before the next read overwrote the buffer:
    assert load_quantized(tmp_path / "q.safetensors").equals(
        quantize_state_dict(state_dict, scheme="asymmetric")
    )


def test_in_memory_output_gives_every_tensor_its_own_memory(ckpt, state_dict, monkeypatch):
    kept = _storages(monkeypatch)
    sink = MemorySink()
    run(open_source(ckpt), make_plan(scheme="asymmetric"), sink)
    assert len({t.untyped_storage().data_ptr() for t in kept}) == len(state_dict)
    # The copied tensors are the ones read: still intact once every other tensor was read.
    copied = [k for k, v in sink.entries.items() if isinstance(v, torch.Tensor)]
    assert copied and all(same_bits(sink.entries[k], state_dict[k]) for k in copied)
    assert QuantizedCheckpoint(sink.entries).equals(quantize_state_dict(state_dict, scheme="asymmetric"))
