"""The NF4 codebook: its 16 levels, nearest-level coding, and the ``nf4`` dtype that stores codes."""

from __future__ import annotations

import torch

from mono_quant.core import MonoQuantError, Packing, QuantDtype

__all__ = [
    "NF4",
    "NF4_LEVELS",
    "NF4_PACKING",
    "nf4_codebook",
    "nf4_decode",
    "nf4_encode",
    "nf4_thresholds",
]

#: The 16 NormalFloat-4 levels, ascending; code ``i`` stands for ``NF4_LEVELS[i]``.
#:
#: Published in Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs"
#: (arXiv:2305.14314, appendix E) and shipped by bitsandbytes as the ``nf4`` entry
#: of ``bitsandbytes.functional.get_4bit_type`` (and ``nf4_dequantization_lut`` in
#: ``csrc/kernels.cu``). They are the quantiles of N(0, 1) built by bitsandbytes'
#: ``create_normal_map(offset=0.9677083, use_extra_value=True)``: 8 positive and 7
#: negative quantiles plus an exact 0, scaled so the largest is 1. Listed rather
#: than computed so the values cannot drift with a math library; the tests rebuild
#: them from the quantile construction and compare bit for bit.
NF4_LEVELS: tuple[float, ...] = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

#: Two codes per byte along the last axis, the first in the high nibble: the byte
#: layout of bitsandbytes' 4-bit kernels (``qvals[j] = code(vals[2j]) << 4 | code(vals[2j+1])``).
NF4_PACKING = Packing(bits=4, per_container=2, container="uint8", axis=-1, order="high_first", offset=0)

#: The registry entry for NF4 codes: indices 0..15 into :data:`NF4_LEVELS`, not integers
#: on an affine grid, stored unpacked as uint8 and packed two per byte. ``affine=False``
#: says so: an affine scheme that claims "every affine integer dtype" (``dtypes=None``,
#: like ``symmetric``) must not accept nf4, or it would return affine qparams labelled nf4.
NF4 = QuantDtype(
    "nf4",
    bits=4,
    signed=False,
    qmin=0,
    qmax=15,
    code_dtype="uint8",
    packing=NF4_PACKING,
    description="4-bit NormalFloat (QLoRA) codebook indices, packed two per byte",
    affine=False,
)

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def nf4_codebook(device: torch.device | str | None = None) -> torch.Tensor:
    """The 16 NF4 levels as a float32 tensor on ``device``.

    >>> levels = nf4_codebook()
    >>> levels.dtype, levels.shape, levels[7].item(), levels[-1].item()
    (torch.float32, torch.Size([16]), 0.0, 1.0)
    """
    return torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device)


def nf4_thresholds(device: torch.device | str | None = None) -> torch.Tensor:
    """The 15 decision boundaries between adjacent levels, as float32.

    Each is the midpoint of two float32 levels, computed in float64 and rounded to
    float32: the constants of bitsandbytes' ``dQuantizeNF4`` decision tree.

    >>> t = nf4_thresholds()
    >>> t.shape, t[7].item() == (NF4_LEVELS[7] + NF4_LEVELS[8]) / 2
    (torch.Size([15]), True)
    """
    levels = torch.tensor(NF4_LEVELS, dtype=torch.float64, device=device)
    return ((levels[:-1] + levels[1:]) / 2).to(torch.float32)


def nf4_encode(normalized: torch.Tensor) -> torch.Tensor:
    """The uint8 code of the nearest NF4 level for each value of ``normalized``.

    Values are compared in float32 with the :func:`nf4_thresholds`; one that sits
    exactly on a boundary gets the lower code, as bitsandbytes' kernels do
    (``if (x > threshold) upper else lower``). Values outside ``[-1, 1]`` get the
    end codes 0 and 15. NaN has no nearest level: check finiteness first.

    >>> import torch
    >>> nf4_encode(torch.tensor([-1.0, -0.05, 0.0, 0.04, 0.9, 7.0])).tolist()
    [0, 6, 7, 8, 15, 15]
    """
    values = normalized.to(torch.float32).contiguous()
    codes = torch.bucketize(values, nf4_thresholds(values.device), right=False)
    return codes.to(torch.uint8)


def nf4_decode(codes: torch.Tensor) -> torch.Tensor:
    """The float32 NF4 level of each code (any integer tensor holding 0..15).

    Raises :class:`~mono_quant.core.MonoQuantError` for a non-integer tensor or a
    code outside ``[0, 15]``: indexing would otherwise wrap a negative code around.

    >>> import torch
    >>> nf4_decode(torch.tensor([0, 7, 15], dtype=torch.uint8)).tolist()
    [-1.0, 0.0, 1.0]
    """
    if codes.dtype not in _INTEGER_DTYPES:
        raise MonoQuantError(f"NF4 codes must be an integer tensor (uint8 codes 0..15), got {codes.dtype}.")
    if codes.numel():
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi > 15:
            bad = lo if lo < 0 else hi
            raise MonoQuantError(
                f"NF4 codes must lie in [0, 15]; got {bad}. Codes come from "
                f"mono_quant.core.quantize (or unpack) with nf4 qparams."
            )
    return nf4_codebook(codes.device)[codes.to(torch.int64)]
