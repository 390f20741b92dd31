"""Streaming: one input tensor in memory at a time, so peak memory follows the largest tensor."""

from __future__ import annotations

import weakref

import torch
from safetensors.torch import save_file

from mono_quant.cli import quantize_checkpoint
from mono_quant.cli._source import _SafetensorsReader


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
