"""QParams: scale, zero-point and the facts needed to use them without the producer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from mono_quant.core._errors import QParamsError
from mono_quant.core._granularity import Granularity, PerTensor, granularity_from_dict

__all__ = ["QPARAMS_FORMAT_VERSION", "QParams"]

QPARAMS_FORMAT_VERSION = 1
#: The ``extra`` key holding a two-level float format's per-tensor scale (see ``QParams.tensor_scale``).
TENSOR_SCALE_KEY = "tensor_scale"


@dataclass(frozen=True, eq=False)
class QParams:
    """Quantization parameters of one tensor, with what produced them.

    ``scale`` is float32 and ``zero_point`` int32, both shaped by the granularity
    (``()``, ``(C,)`` or the input shape with the group axis replaced by the group
    count). A float target (``float16``/``bfloat16``) has neither: quantizing is a
    plain cast. ``affine`` says whether the core's affine quantize/dequantize
    apply; a non-affine scheme (a codebook) does its own. ``compute_dtype`` is
    ``"float32"`` or ``"input"``, and ``rounding`` ``"torchao"`` or
    ``"compressed-tensors"`` (see :class:`~mono_quant.core.Profile`): together they
    say how :func:`~mono_quant.core.quantize` turns values into codes.

    For a float code dtype (``kind="float_code"``: FP8, E2M1) the zero-point is 0
    everywhere and codes mean ``value(q) * scale``. A two-level format (NVFP4) also
    has a float32 per-tensor scale, :attr:`tensor_scale`, stored exactly in
    ``extra["tensor_scale"]`` (``float.hex``) so every reader of the metadata has it.

    >>> import torch
    >>> qp = QParams(torch.tensor(0.5), torch.tensor(0, dtype=torch.int32), dtype="int8")
    >>> QParams.from_dict(qp.to_dict()).equals(qp)
    True
    """

    scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    dtype: str
    granularity: Granularity = field(default_factory=PerTensor)
    scheme: str = ""
    scheme_version: str = ""
    profile: str = "default"
    compute_dtype: str = "float32"
    affine: bool = True
    rounding: str = "torchao"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.scale is None) != (self.zero_point is None):
            raise QParamsError(
                "scale and zero_point must both be tensors (integer target) or both "
                f"None (float target); got scale={_kind(self.scale)}, "
                f"zero_point={_kind(self.zero_point)}."
            )
        if self.scale is None or self.zero_point is None:
            return
        if self.scale.dtype != torch.float32:
            raise QParamsError(f"scale must be float32, got {self.scale.dtype}.")
        if self.zero_point.dtype != torch.int32:
            raise QParamsError(f"zero_point must be int32, got {self.zero_point.dtype}.")
        if self.scale.shape != self.zero_point.shape:
            raise QParamsError(
                f"scale and zero_point must have the same shape; got {tuple(self.scale.shape)} "
                f"and {tuple(self.zero_point.shape)}."
            )

    @property
    def is_float(self) -> bool:
        """True when the target is a float dtype and there are no scale/zero-point."""
        return self.scale is None

    @property
    def tensor_scale(self) -> float | None:
        """The per-tensor scale of a two-level float format (NVFP4), or ``None``.

        It is combined with the per-block ``scale`` by ``rounding``: ``"torchao"``
        multiplies (``value * (tensor_scale * scale)``), ``"compressed-tensors"``
        divides (``value * (scale / tensor_scale)``, its ``weight_global_scale``).

        >>> import torch
        >>> qp = QParams(torch.tensor([1.0]), torch.tensor([0], dtype=torch.int32), dtype="x",
        ...              extra={"tensor_scale": (0.25).hex()})
        >>> qp.tensor_scale
        0.25
        """
        raw = self.extra.get(TENSOR_SCALE_KEY)
        if raw is None:
            return None
        try:
            return float.fromhex(raw)
        except ValueError:
            raise QParamsError(
                f"extra[{TENSOR_SCALE_KEY!r}] must be a float in float.hex() form, got {raw!r}."
            ) from None

    def metadata(self) -> dict[str, str]:
        """Everything but the tensors, as ``str -> str`` (safetensors metadata).

        >>> QParams(None, None, dtype="float16").metadata()["dtype"]
        'float16'
        """
        return {
            "format_version": str(QPARAMS_FORMAT_VERSION),
            "dtype": self.dtype,
            "granularity": json.dumps(self.granularity.to_dict(), sort_keys=True),
            "scheme": self.scheme,
            "scheme_version": self.scheme_version,
            "profile": self.profile,
            "compute_dtype": self.compute_dtype,
            "affine": "1" if self.affine else "0",
            "extra": json.dumps(self.extra, sort_keys=True),
        } | ({} if self.rounding == "torchao" else {"rounding": self.rounding})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors by name (``scale``, ``zero_point``); empty for a float target."""
        if self.scale is None or self.zero_point is None:
            return {}
        return {"scale": self.scale, "zero_point": self.zero_point}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict: the tensors under ``scale``/``zero_point`` plus :meth:`metadata`."""
        out: dict[str, Any] = dict(self.metadata())
        out["scale"] = self.scale
        out["zero_point"] = self.zero_point
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QParams:
        """Rebuild QParams from :meth:`to_dict` (or metadata plus tensors).

        A dict written by a newer format version is refused, not misread.
        """
        version = str(data.get("format_version", QPARAMS_FORMAT_VERSION))
        if not version.isdigit() or int(version) > QPARAMS_FORMAT_VERSION:
            raise QParamsError(
                f"qparams format version {version} is newer than this mono-quant-core "
                f"understands ({QPARAMS_FORMAT_VERSION}); upgrade mono-quant-core."
            )
        try:
            gran = data["granularity"]
            gran_dict = json.loads(gran) if isinstance(gran, str) else gran
            extra = data.get("extra", "{}")
            return cls(
                scale=data.get("scale"),
                zero_point=data.get("zero_point"),
                dtype=str(data["dtype"]),
                granularity=granularity_from_dict(gran_dict),
                scheme=str(data.get("scheme", "")),
                scheme_version=str(data.get("scheme_version", "")),
                profile=str(data.get("profile", "default")),
                compute_dtype=str(data.get("compute_dtype", "float32")),
                rounding=str(data.get("rounding", "torchao")),
                affine=str(data.get("affine", "1")) in ("1", "True", "true"),
                extra=json.loads(extra) if isinstance(extra, str) else dict(extra),
            )
        except KeyError as exc:
            raise QParamsError(f"qparams dict is missing the key {exc.args[0]!r}.") from None
        except json.JSONDecodeError as exc:
            raise QParamsError(f"qparams dict holds malformed JSON: {exc}.") from None

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> QParams:
        """Rebuild QParams from :meth:`tensors` and :meth:`metadata`."""
        return cls.from_dict({**metadata, **tensors})

    def to(self, device: torch.device | str) -> QParams:
        """These qparams with the tensors on ``device``."""
        if self.scale is None or self.zero_point is None:
            return self
        return _replace(self, scale=self.scale.to(device), zero_point=self.zero_point.to(device))

    def equals(self, other: QParams) -> bool:
        """Exact equality: same metadata and bit-identical tensors."""
        if self.metadata() != other.metadata():
            return False
        if self.scale is None or other.scale is None:
            return self.scale is None and other.scale is None
        assert self.zero_point is not None and other.zero_point is not None
        return (
            self.scale.shape == other.scale.shape
            and torch.equal(self.scale, other.scale)
            and torch.equal(self.zero_point, other.zero_point)
        )


def _replace(qp: QParams, **changes: Any) -> QParams:
    import dataclasses

    return dataclasses.replace(qp, **changes)


def _kind(t: object) -> str:
    return "None" if t is None else type(t).__name__
