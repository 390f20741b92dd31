"""Profiles: the conventions (eps, compute dtype, zero-point rule) a scheme computes with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from mono_quant.core._errors import UnsupportedOptionError

__all__ = [
    "COMPRESSED_TENSORS_PROFILE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "TORCHAO_PROFILE",
    "Profile",
    "resolve_profile",
]

ComputeDtype = Literal["float32", "input"]
UnsignedSymmetricZeroPoint = Literal["midpoint_up", "midpoint_down"]
Rounding = Literal["torchao", "compressed-tensors"]

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class Profile:
    """The numerical conventions of a min/max scheme, as explicit parameters.

    - ``eps``: the smallest scale; ``None`` means the smallest normal number of the
      compute dtype (torchao's default). The clamp happens before the zero-point
      is computed.
    - ``compute_dtype``: ``"float32"`` converts the input to float32 before any
      arithmetic; ``"input"`` computes in the input's own dtype (torchao's choice,
      which collapses scales for bf16/fp16 input); float64 input is computed in
      float32 either way (torchao does not accept it).
    - ``unsigned_symmetric_zero_point``: the zero-point of a symmetric scheme on an
      unsigned dtype, ``"midpoint_up"`` = ``(qmin + qmax + 1) // 2`` (128 for uint8,
      as torch.ao and torchao do) or ``"midpoint_down"`` = ``(qmin + qmax) // 2``.
    - ``rounding``: the order of operations. ``"torchao"``: the scale is floored
      at ``eps``, ``zero_point = clamp(qmin - round(lo / scale))`` and
      ``q = clamp(round(x * (1 / scale)) + zero_point)``. ``"compressed-tensors"``
      (compressed-tensors' ``calculate_qparams`` and ``quantize``, as
      llm-compressor runs them): only a scale of exactly 0 is replaced, by the
      compute dtype's machine epsilon (``eps`` does not apply),
      ``zero_point = round(clamp(qmin - lo / scale))`` and
      ``q = round(clamp(x / scale + zero_point))``, every step in the compute dtype.

    >>> DEFAULT_PROFILE.eps == torch.finfo(torch.float32).eps
    True
    >>> TORCHAO_PROFILE.compute_dtype
    'input'
    """

    name: str = "default"
    eps: float | None = FLOAT32_EPS
    compute_dtype: ComputeDtype = "float32"
    unsigned_symmetric_zero_point: UnsignedSymmetricZeroPoint = "midpoint_up"
    rounding: Rounding = "torchao"

    def __post_init__(self) -> None:
        if self.eps is not None and not (isinstance(self.eps, float) and self.eps > 0.0):
            raise UnsupportedOptionError(
                f"profile {self.name!r}: eps must be a positive float or None, got {self.eps!r}."
            )
        if self.compute_dtype not in ("float32", "input"):
            raise UnsupportedOptionError(
                f"profile {self.name!r}: compute_dtype must be 'float32' or 'input', "
                f"got {self.compute_dtype!r}."
            )
        if self.unsigned_symmetric_zero_point not in ("midpoint_up", "midpoint_down"):
            raise UnsupportedOptionError(
                f"profile {self.name!r}: unsigned_symmetric_zero_point must be "
                f"'midpoint_up' or 'midpoint_down', got {self.unsigned_symmetric_zero_point!r}."
            )
        if self.rounding not in ("torchao", "compressed-tensors"):
            raise UnsupportedOptionError(
                f"profile {self.name!r}: rounding must be 'torchao' or 'compressed-tensors', "
                f"got {self.rounding!r}."
            )

    def compute_dtype_for(self, x_dtype: torch.dtype) -> torch.dtype:
        """The torch dtype arithmetic runs in for an input of ``x_dtype``.

        >>> DEFAULT_PROFILE.compute_dtype_for(torch.bfloat16)
        torch.float32
        >>> TORCHAO_PROFILE.compute_dtype_for(torch.bfloat16)
        torch.bfloat16
        """
        if self.compute_dtype == "float32" or x_dtype == torch.float64:
            # "input" means the input's own narrow float; float64 math would give
            # scales (eps 2e-308) that float32 QParams cannot hold.
            return torch.float32
        return x_dtype

    def eps_for(self, compute_dtype: torch.dtype) -> float:
        """The scale floor used when computing in ``compute_dtype``."""
        if self.eps is None:
            return float(torch.finfo(compute_dtype).smallest_normal)
        return self.eps

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (stored in checkpoint metadata)."""
        return dataclasses.asdict(self)


DEFAULT_PROFILE = Profile()
TORCHAO_PROFILE = Profile(name="torchao", eps=None, compute_dtype="input")
#: What llm-compressor computes (and stores: scales in the model's dtype), so that a
#: compressed-tensors checkpoint loads bit for bit on transformers' default path.
COMPRESSED_TENSORS_PROFILE = Profile(
    name="compressed-tensors", eps=None, compute_dtype="input", rounding="compressed-tensors"
)
PROFILES: dict[str, Profile] = {
    p.name: p for p in (DEFAULT_PROFILE, TORCHAO_PROFILE, COMPRESSED_TENSORS_PROFILE)
}


def resolve_profile(
    profile: str | Profile | None = None,
    *,
    eps: float | Literal["keep"] | None = "keep",
    compute_dtype: ComputeDtype | None = None,
    unsigned_symmetric_zero_point: UnsignedSymmetricZeroPoint | None = None,
    rounding: Rounding | None = None,
) -> Profile:
    """A named profile (or ``profile`` itself) with the given parameters overridden.

    An override gives the profile the name ``"custom"`` so a checkpoint never
    claims a named profile it does not follow.

    >>> resolve_profile("torchao").name
    'torchao'
    >>> resolve_profile(eps=1e-8).name
    'custom'
    """
    if profile is None:
        base = DEFAULT_PROFILE
    elif isinstance(profile, Profile):
        base = profile
    elif profile in PROFILES:
        base = PROFILES[profile]
    else:
        raise UnsupportedOptionError(
            f"unknown profile {profile!r}; known profiles: {', '.join(sorted(PROFILES))}."
        )
    changes: dict[str, object] = {}
    if eps != "keep":
        changes["eps"] = None if eps is None else float(eps)
    if compute_dtype is not None:
        changes["compute_dtype"] = compute_dtype
    if unsigned_symmetric_zero_point is not None:
        changes["unsigned_symmetric_zero_point"] = unsigned_symmetric_zero_point
    if rounding is not None:
        changes["rounding"] = rounding
    if not changes:
        return base
    changed = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    if changed == base:
        return base
    return dataclasses.replace(changed, name="custom")
