"""The ``mxfp4`` and ``nvfp4`` schemes: E2M1 block scales, as torchao and compressed-tensors compute them.

Both are min/max schemes: a block's scale depends on its absolute maximum only
(and, for NVFP4, on the tensor's), and core's float-code rule turns ``x / scale``
into E2M1 codes. What differs between the references is how a scale is rounded
into its storage; each profile follows one reference exactly:

- ``default`` / ``torchao``: torchao's ``to_mx`` (``ScaleCalculationMode.FLOOR``,
  the OCP MX rule) and ``nvfp4_quantize`` with ``per_tensor_amax_to_scale``;
- ``compressed-tensors``: its ``calculate_qparams`` (``generate_mx_scales``, which
  rounds the block maximum to one mantissa bit first, torchao's ``EVEN`` mode) and
  ``generate_gparam`` for NVFP4's global scale.
"""

from __future__ import annotations

import importlib.metadata as md
import math

import torch

from mono_quant.core import Capabilities, MinMaxScheme, PerGroup, QuantDtype

__all__ = ["MXFP4_BLOCK", "NVFP4_BLOCK", "Mxfp4Scheme", "Nvfp4Scheme"]

try:
    _VERSION = md.version("mono-quant-fp4")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    _VERSION = "0+unknown"

#: The block sizes the formats define (OCP MX: 32; NVFP4: 16), along the last (input) axis.
MXFP4_BLOCK = 32
NVFP4_BLOCK = 16
#: E8M0 holds 2**-127 .. 2**127 (255 is NaN).
_E8M0_MIN, _E8M0_MAX = -127, 127
_FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)
_FP8_TINY = float(torch.finfo(torch.float8_e4m3fn).tiny)  # torchao's E4M3_EPS, 2**-6
#: The smallest torchao-convention tensor scale: its reciprocal over the smallest block scale
#: (2**-6) stays finite in float32. torchao itself gives NaN or inf below it.
_TENSOR_SCALE_MIN = 2.0**-120


def _capabilities(dtype: str, block: int) -> Capabilities:
    return Capabilities(
        dtypes=(dtype,),
        granularities=("per_group",),
        profiles=("default", "torchao", "compressed-tensors"),
        symmetric=True,
        default_dtype=dtype,
        default_granularity=PerGroup(axis=-1, group_size=block),
    )


def _absmax(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(lo)
    return torch.max(-torch.min(lo, zeros), torch.max(hi, zeros))


def _f32_exponent(x: torch.Tensor) -> torch.Tensor:
    """The unbiased exponent field of float32 ``x`` (int32; -127 for zero and subnormals)."""
    return ((x.to(torch.float32).view(torch.int32) >> 23) & 0xFF) - 127


def _pow2(exponent: torch.Tensor) -> torch.Tensor:
    """``2.0 ** exponent`` in float32, exactly, for exponents in [-127, 127] (2**-127 is subnormal)."""
    biased = (exponent + 127).to(torch.int32)
    bits = torch.where(biased > 0, biased << 23, torch.full_like(biased, 1 << 22))
    return bits.view(torch.float32)


#: Float dtype -> (its same-width integer view, mantissa bits, exponent bits).
_LAYOUT = {
    torch.float32: (torch.int32, 23, 8),
    torch.bfloat16: (torch.int16, 7, 8),
    torch.float16: (torch.int16, 10, 5),
}


def _round_to_power_of_two(a: torch.Tensor, mantissa_bits: int) -> torch.Tensor:
    """``a`` rounded to a power of two in its own dtype, up from ``(2 - 2**-mantissa_bits / 2) * 2**e``.

    compressed-tensors' ``round_to_power_2`` (torchao's ``EVEN``): add a quarter of
    the exponent's step to the bits and keep the exponent. Done in ``a``'s own dtype,
    as it is there: a subnormal of that dtype rounds to 0 or its smallest normal.
    """
    ints, mant, expo = _LAYOUT[a.dtype]
    bits = a.view(ints).to(torch.int32) & ((1 << (8 * a.element_size())) - 1)
    bits = (bits + (1 << (mant - mantissa_bits - 1))) & (((1 << (expo + 1)) - 1) << mant)
    return bits.to(ints).view(a.dtype)


def mx_scale_exponent(amax: torch.Tensor, mantissa_bits: int, emax: int, *, round_even: bool) -> torch.Tensor:
    """The shared exponent of each block: ``floor(log2(amax)) - emax``, clamped to E8M0's range.

    ``round_even`` first rounds ``amax`` (in its dtype) to ``mantissa_bits`` mantissa
    bits (up from ``1.75 * 2**e`` for E2M1), as compressed-tensors and torchao's
    ``EVEN`` mode do.

    >>> mx_scale_exponent(torch.tensor([6.0, 7.0, 0.0]), 1, 2, round_even=False).tolist()
    [0, 0, -127]
    >>> mx_scale_exponent(torch.tensor([6.0, 7.0, 0.0]), 1, 2, round_even=True).tolist()
    [0, 1, -127]
    """
    if round_even:
        amax = _round_to_power_of_two(amax, mantissa_bits)
    exponent = _f32_exponent(amax.to(torch.float32))
    return torch.clamp(exponent - emax, _E8M0_MIN, _E8M0_MAX)


class Mxfp4Scheme(MinMaxScheme):
    """MXFP4: E2M1 codes in blocks (32 by default) along the last axis, each with a power-of-two scale.

    ``scale = 2**(floor(log2(amax)) - 2)`` (2 = floor(log2(6)), E2M1's largest
    exponent), clamped to E8M0's ``2**-127 .. 2**127``; codes are ``x / scale``
    rounded to E2M1, ties to even, saturating at ±6. An all-zero block gets
    ``2**-127`` and exact zeros. The default profile is torchao's ``to_mx``
    (``FLOOR``, the OCP rule) bit for bit, except on blocks whose ``amax`` is below
    ``2**-124``: there torchao stores ``2**-127`` but divides by ``2**-126``; this
    scheme divides by the scale it stores. The ``compressed-tensors`` profile rounds
    ``amax`` to one mantissa bit before taking the exponent (``generate_mx_scales``).

    >>> import torch
    >>> qp = Mxfp4Scheme().compute_qparams(torch.full((2, 32), 3.0))
    >>> qp.scale.tolist()  # 2**(1 - 2): 3.0 / 0.5 = 6.0, the largest code
    [[0.5], [0.5]]
    """

    name = "mxfp4"
    version = _VERSION
    capabilities = _capabilities("mxfp4", MXFP4_BLOCK)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Power-of-two block scales (float32) and the zero-point 0."""
        assert dtype.max_value is not None and dtype.mantissa_bits is not None
        emax = math.floor(math.log2(dtype.max_value))
        ct = self.profile.rounding == "compressed-tensors"
        exponent = mx_scale_exponent(_absmax(lo, hi), dtype.mantissa_bits, emax, round_even=ct)
        scale = _pow2(exponent)
        if ct:
            # compressed-tensors holds the scale in the weight's dtype and replaces a 0 there
            # (2**-127 underflows float16) by its uint8 "eps", 1.
            narrow = scale.to(lo.dtype)
            scale = torch.where(narrow == 0, torch.ones_like(narrow), narrow).to(torch.float32)
        return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)


class Nvfp4Scheme(MinMaxScheme):
    """NVFP4: E2M1 codes in blocks (16 by default) with FP8 E4M3 scales under a float32 tensor scale.

    The tensor scale maps the tensor's ``amax`` to ``448 * 6`` so block scales use
    E4M3's range; each block scale is its ``amax / 6`` relative to the tensor scale,
    rounded to E4M3. The two profiles follow the two conventions in use:

    - ``default``/``torchao`` (torchao's ``nvfp4_quantize``, NVIDIA's ``weight_scale_2``):
      ``t = amax / 2688`` (floored at ``2**-120``, below which torchao's ``1 / t / s``
      overflows to NaN codes); block scale ``fp8(clamp(amax_b / 6 / t, 2**-6, 448))``; codes
      ``round(x * ((1 / t) / s))``; values ``v * (t * s)``.
    - ``compressed-tensors`` (``generate_gparam`` + ``calculate_qparams``; its
      ``weight_global_scale``): ``t = 2688 / amax`` (1 where that is not finite); block
      scale ``fp8(clamp(t * (amax_b / 6), ±448))``, 0 replaced by 0.125; codes
      ``round(x / (s / t))``; values ``v * (s / t)``.

    ``QParams.scale`` holds the block scales (E4M3 values, as float32) and
    ``QParams.tensor_scale`` ``t``.

    >>> import torch
    >>> qp = Nvfp4Scheme().compute_qparams(torch.full((1, 16), 6.0))
    >>> qp.scale.tolist(), qp.tensor_scale == float(torch.tensor(6.0) / 2688)  # float32 arithmetic
    ([[448.0]], True)
    """

    name = "nvfp4"
    version = _VERSION
    capabilities = _capabilities("nvfp4", NVFP4_BLOCK)

    def _tensor_scale(self, amax: torch.Tensor, elem_max: float) -> torch.Tensor:
        """The float32 per-tensor scale ``t`` from every block's ``amax`` (the tensor's range is theirs)."""
        tensor_amax = amax.max()
        if self.profile.rounding == "compressed-tensors":
            floor = torch.finfo(amax.dtype).tiny
            tensor = (_FP8_MAX * elem_max) / torch.clamp(tensor_amax, min=floor)
            return torch.nan_to_num(tensor, nan=1.0, posinf=1.0, neginf=1.0).to(torch.float32)
        return torch.clamp(tensor_amax.to(torch.float32) / (_FP8_MAX * elem_max), min=_TENSOR_SCALE_MIN)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """E4M3 block scales (as float32) and the zero-point 0."""
        assert dtype.max_value is not None
        elem_max = float(dtype.max_value)
        amax = _absmax(lo, hi)
        tensor = self._tensor_scale(amax, elem_max)
        if self.profile.rounding == "compressed-tensors":
            block = tensor * (amax / elem_max).to(torch.float32)
            scale = torch.clamp(block, -_FP8_MAX, _FP8_MAX).to(torch.float8_e4m3fn).to(torch.float32)
            scale = torch.where(scale == 0, torch.full_like(scale, 0.125), scale)
        else:
            block = amax.to(torch.float32) / elem_max / tensor
            scale = torch.clamp(block, min=_FP8_TINY, max=_FP8_MAX).to(torch.float8_e4m3fn).to(torch.float32)
        return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)

    def qparams_extra(self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype) -> dict[str, str]:
        """The per-tensor scale, exactly (``float.hex``), for ``QParams.tensor_scale``."""
        assert dtype.max_value is not None
        return {"tensor_scale": float(self._tensor_scale(_absmax(lo, hi), float(dtype.max_value))).hex()}
