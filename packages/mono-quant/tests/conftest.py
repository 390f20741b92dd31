"""Shared fixtures: small checkpoints on disk (single file, sharded folder, .pt) and helpers."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from safetensors.torch import save_file

settings.register_profile("mono-quant-ci", derandomize=True, max_examples=25, deadline=None)
settings.register_profile("mono-quant-dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))


def small_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A model-like state dict: 2-D weights, a conv, 1-D biases/norms, an integer buffer."""
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(32, 256, generator=g),
        "layers.0.fc.weight": torch.randn(64, 256, generator=g),
        "layers.0.fc.bias": torch.randn(64, generator=g),
        "layers.0.norm.weight": torch.ones(256),
        "layers.1.fc.weight": (torch.randn(16, 128, generator=g) * 0.02).to(torch.bfloat16),
        "layers.1.conv.weight": torch.randn(8, 4, 3, 3, generator=g),
        "position_ids": torch.arange(16).reshape(1, 16),
    }


@pytest.fixture
def state_dict() -> dict[str, torch.Tensor]:
    return small_state_dict()


#: A model config with no architecture transformers knows: the name rule chooses the Linear weights.
TOY_CONFIG = {"model_type": "toy", "hidden_size": 256}


def write_config(folder: Path, config: dict[str, object] | None = None) -> Path:
    """Write a model ``config.json`` into ``folder`` (compressed-tensors output needs the model's config)."""
    path = folder / "config.json"
    path.write_text(json.dumps(TOY_CONFIG if config is None else config))
    return path


@pytest.fixture
def model_config() -> Callable[..., Path]:
    """``model_config(folder, config=None)``: write a model ``config.json`` there."""
    return write_config


@pytest.fixture
def ckpt(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """One .safetensors file holding :func:`small_state_dict`, with a model ``config.json`` beside it."""
    path = tmp_path / "in" / "model.safetensors"
    path.parent.mkdir()
    save_file(state_dict, path, metadata={"format": "pt"})
    write_config(path.parent)
    return path


@pytest.fixture
def sharded(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """A folder with two shards, an index, a config.json and a tokenizer file."""
    folder = tmp_path / "sharded"
    folder.mkdir()
    names = list(state_dict)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: state_dict[k] for k in keys}, folder / fname)
        weight_map.update(dict.fromkeys(keys, fname))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    write_config(folder)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def _digest(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def unchanged() -> Callable[[Path], Callable[[], None]]:
    """``check = unchanged(path)`` ... ``check()`` asserts the bytes and mtime did not change."""

    def snapshot(path: Path) -> Callable[[], None]:
        before = (_digest(path), path.stat().st_mtime_ns)

        def check() -> None:
            assert (_digest(path), path.stat().st_mtime_ns) == before, f"{path} was modified"

        return check

    return snapshot


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "mono-quant-tmp" in p.name or p.name.endswith(".data"))


@pytest.fixture
def leftovers() -> Callable[[Path], list[str]]:
    """``leftovers(folder)``: temporary files or folders of an atomic write left in ``folder``."""
    return _leftovers


@pytest.fixture
def make_state_dict() -> Callable[[int], dict[str, torch.Tensor]]:
    """``make_state_dict(seed)``: a fresh :func:`small_state_dict`."""
    return small_state_dict
