"""Quant dtypes as data: ranges, storage containers and how values are packed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Packing", "QuantDtype"]

_CONTAINERS: dict[str, torch.dtype] = {
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True)
class Packing:
    """How sub-byte codes are packed into a storage container, described as data.

    Codes are packed along ``axis`` (the last one by default). Each ``container``
    element holds ``per_container`` codes of ``bits`` bits; with ``order="low_first"``
    the first code sits in the lowest bits. ``offset`` is added to a code before it
    is stored (so signed codes are stored unsigned) and subtracted on unpacking.
    A length along ``axis`` that is not a multiple of ``per_container`` is padded
    with stored zeros; the original shape is needed to unpack.

    >>> Packing(bits=4, per_container=2, offset=8).container
    'uint8'
    """

    bits: int
    per_container: int
    container: str = "uint8"
    axis: int = -1
    order: Literal["low_first", "high_first"] = "low_first"
    offset: int = 0

    def to_dict(self) -> dict[str, object]:
        """The packing as a JSON-ready dict (stored in checkpoint metadata).

        >>> Packing(bits=4, per_container=2, offset=8).to_dict()["offset"]
        8
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Packing:
        """Rebuild a :class:`Packing` from :meth:`to_dict`'s output.

        >>> p = Packing(bits=4, per_container=2, offset=8)
        >>> Packing.from_dict(p.to_dict()) == p
        True
        """
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class QuantDtype:
    """One entry of the quant dtype registry.

    ``code_dtype`` is the torch dtype that holds unpacked codes (``int8`` for int4
    codes); ``packing`` says how they are stored when packed, or ``None``.
    Float targets (``kind="float"``) have no range: quantizing to them is a cast.
    ``affine=False`` marks an integer dtype whose codes index a codebook (NF4)
    rather than an evenly spaced grid; affine schemes that accept "every integer
    dtype" do not accept it.

    >>> d = QuantDtype("int8", bits=8, signed=True, qmin=-128, qmax=127, code_dtype="int8")
    >>> d.is_float, d.levels
    (False, 256)
    """

    name: str
    bits: int
    signed: bool
    qmin: int | None
    qmax: int | None
    code_dtype: str
    kind: Literal["int", "float"] = "int"
    packing: Packing | None = None
    description: str = ""
    affine: bool = True

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid quant dtype {self.name!r}: " + "; ".join(problems) + ".")

    def _problems(self) -> list[str]:
        out: list[str] = []
        if not self.name or not isinstance(self.name, str):
            out.append(f"name must be a non-empty string, got {self.name!r}")
        if self.code_dtype not in _CONTAINERS:
            out.append(f"code_dtype must be one of {sorted(_CONTAINERS)}, got {self.code_dtype!r}")
        if self.kind == "float":
            if self.qmin is not None or self.qmax is not None:
                out.append("a float target has no qmin/qmax; pass None for both")
            if not self.affine:
                out.append("a float target cannot be a codebook (affine=False)")
            return out
        if self.kind != "int":
            out.append(f"kind must be 'int' or 'float', got {self.kind!r}")
            return out
        if self.qmin is None or self.qmax is None:
            out.append("an integer dtype needs qmin and qmax")
            return out
        if self.qmin >= self.qmax:
            out.append(f"qmin ({self.qmin}) must be below qmax ({self.qmax})")
        lo, hi = (-(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1) if self.signed else (0, 2**self.bits - 1)
        if self.qmin < lo or self.qmax > hi:
            out.append(
                f"[{self.qmin}, {self.qmax}] does not fit {self.bits} "
                f"{'signed' if self.signed else 'unsigned'} bits ([{lo}, {hi}])"
            )
        info = torch.iinfo(_CONTAINERS[self.code_dtype]) if self.code_dtype in _CONTAINERS else None
        if info is not None and (self.qmin < info.min or self.qmax > info.max):
            out.append(f"[{self.qmin}, {self.qmax}] does not fit code_dtype {self.code_dtype!r}")
        if self.packing is not None:
            p = self.packing
            if p.bits != self.bits:
                out.append(f"packing.bits ({p.bits}) must equal bits ({self.bits})")
            if p.container not in ("uint8", "int32", "int16"):
                out.append(f"packing.container must be uint8, int16 or int32, got {p.container!r}")
            else:
                width = torch.iinfo(_CONTAINERS.get(p.container, torch.int32)).bits
                if p.bits * p.per_container > width:
                    out.append(f"{p.per_container} codes of {p.bits} bits do not fit one {p.container}")
            if not (self.qmin + p.offset >= 0 and self.qmax + p.offset < 2**p.bits):
                out.append(
                    f"offset {p.offset} does not map [{self.qmin}, {self.qmax}] into [0, {2**p.bits - 1}]"
                )
            if p.order not in ("low_first", "high_first"):
                out.append(f"packing.order must be low_first or high_first, got {p.order!r}")
        return out

    @property
    def is_float(self) -> bool:
        """True for a passthrough float target (float16, bfloat16)."""
        return self.kind == "float"

    @property
    def levels(self) -> int:
        """Number of representable codes, ``qmax - qmin + 1`` (0 for float targets)."""
        if self.qmin is None or self.qmax is None:
            return 0
        return self.qmax - self.qmin + 1

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of unpacked codes (or of the cast, for a float target)."""
        return _CONTAINERS[self.code_dtype]

    def to_dict(self) -> dict[str, object]:
        """The entry as a JSON-ready dict.

        >>> QuantDtype("int8", 8, True, -128, 127, "int8").to_dict()["qmax"]
        127
        """
        data = dataclasses.asdict(self)
        data["packing"] = None if self.packing is None else self.packing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> QuantDtype:
        """Rebuild an entry from :meth:`to_dict`'s output (a checkpoint's metadata).

        >>> d = QuantDtype("i4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
        >>> QuantDtype.from_dict(d.to_dict()) == d
        True
        """
        fields = dict(data)
        packing = fields.pop("packing", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown quant dtype field(s) {unknown}; known: {sorted(known)}.")
        return cls(
            **fields,  # type: ignore[arg-type]
            packing=None if packing is None else Packing.from_dict(packing),  # type: ignore[arg-type]
        )
