"""Quant dtypes as data: ranges, float formats, storage containers and how values are packed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Packing", "QuantDtype", "float_format_max"]

_CONTAINERS: dict[str, torch.dtype] = {
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int16": torch.int16,
    "int32": torch.int32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "float8_e8m0fnu": torch.float8_e8m0fnu,
}
_INT_CONTAINERS = ("int8", "uint8", "int16", "int32")
#: torch's 8-bit float containers and the format each holds: (exponent bits, mantissa bits, inf, NaN).
_FLOAT8_FORMATS: dict[str, tuple[int, int, bool, bool]] = {
    "float8_e4m3fn": (4, 3, False, True),
    "float8_e5m2": (5, 2, True, True),
}
#: Storage a float format may prescribe for its scales (``None``: any float32 scale).
SCALE_DTYPES = ("float8_e8m0fnu", "float8_e4m3fn")

Kind = Literal["int", "float", "float_code"]


def float_format_max(exponent_bits: int, mantissa_bits: int, *, has_inf: bool, has_nan: bool) -> float:
    """The largest finite value of a sign-exponent-mantissa float format (bias ``2**(e-1) - 1``).

    With inf (IEEE, E5M2) the all-ones exponent is reserved; with NaN only (the
    ``fn`` formats, E4M3) only the all-ones exponent *and* mantissa is NaN; with
    neither (E2M1, FP6) every encoding is a number.

    >>> float_format_max(4, 3, has_inf=False, has_nan=True)
    448.0
    >>> float_format_max(5, 2, has_inf=True, has_nan=True)
    57344.0
    >>> float_format_max(2, 1, has_inf=False, has_nan=False)
    6.0
    """
    bias = 2 ** (exponent_bits - 1) - 1
    top = 2**exponent_bits - 1
    if has_inf:
        return float((2.0 - 2.0**-mantissa_bits) * 2.0 ** (top - 1 - bias))
    if has_nan:
        return float((2.0 - 2.0 ** (1 - mantissa_bits)) * 2.0 ** (top - bias))
    return float((2.0 - 2.0**-mantissa_bits) * 2.0 ** (top - bias))


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


#: The fields that describe a float format; they keep their defaults on other kinds and
#: are left out of :meth:`QuantDtype.to_dict` there, so integer metadata is what it always was.
_FLOAT_FIELDS: dict[str, object] = {
    "exponent_bits": None,
    "mantissa_bits": None,
    "max_value": None,
    "has_inf": False,
    "has_nan": False,
    "scale_dtype": None,
}


@dataclass(frozen=True)
class QuantDtype:
    """One entry of the quant dtype registry: what codes are, how they are held and stored.

    Fields:

    - ``name``: the registry key (``"int8"``, ``"int4"``, ``"float8_e4m3fn"``).
    - ``bits``: bits per code as stored (4 for int4 and E2M1, 8 for FP8).
    - ``signed``: whether codes carry a sign (integers: a signed range; floats: a sign bit).
    - ``qmin`` / ``qmax``: the integer code range; ``None`` for both float kinds.
    - ``code_dtype``: the torch dtype that holds unpacked codes, by name (``int8`` for
      int4 codes, ``float8_e4m3fn`` for FP8 codes, ``uint8`` for the bit patterns of a
      sub-byte float such as E2M1).
    - ``kind``: what a code means.

      - ``"int"``: an integer on an evenly spaced grid, ``(q - zero_point) * scale``
        (or, with ``affine=False``, an index into a codebook such as NF4).
      - ``"float"``: a passthrough cast target (float16, bfloat16): no scale, no
        zero-point, quantizing is ``x.to(code_dtype)``.
      - ``"float_code"``: a scaled float code: ``value(q) * scale``, where ``value`` reads
        the code as a float of ``exponent_bits``/``mantissa_bits`` (FP8 E4M3/E5M2, E2M1).
        Quantizing rounds ``x / scale`` to the nearest representable value, ties to
        even, saturating at ``±max_value``. The zero-point is always 0.

    - ``packing``: how codes are packed into a container (:class:`Packing`), or ``None``.
    - ``description``: one line for listings.
    - ``affine``: ``False`` marks an integer dtype whose codes index a codebook (NF4)
      rather than an evenly spaced grid; schemes that accept "every affine integer
      dtype" do not accept it. Float kinds are never codebooks (always ``True``).
    - ``exponent_bits`` / ``mantissa_bits`` (``float_code``): the format. The exponent
      bias is ``2**(exponent_bits - 1) - 1``; an all-zero exponent encodes subnormals.
    - ``max_value`` (``float_code``): the largest finite magnitude, where quantizing
      saturates; it must equal :func:`float_format_max` of the format.
    - ``has_inf`` / ``has_nan`` (``float_code``): whether the format has inf/NaN
      encodings (E5M2 both; E4M3FN NaN only; E2M1 neither). Quantizing finite input
      never produces them.
    - ``scale_dtype`` (``float_code``): the storage the format prescribes for scales:
      ``None`` (any float32 scale), ``"float8_e8m0fnu"`` (powers of two: MX shared
      exponents) or ``"float8_e4m3fn"`` (FP8 block scales under a float32 per-tensor
      scale: NVFP4).

    A checkpoint's metadata is :meth:`to_dict`; the float fields appear there only
    on ``float_code`` entries, so integer and cast metadata is unchanged and old
    metadata (without them) reads back as before.

    >>> d = QuantDtype("int8", bits=8, signed=True, qmin=-128, qmax=127, code_dtype="int8")
    >>> d.is_float, d.levels
    (False, 256)
    >>> e4m3 = QuantDtype("e4m3", 8, True, None, None, "float8_e4m3fn", kind="float_code",
    ...                   exponent_bits=4, mantissa_bits=3, max_value=448.0, has_nan=True)
    >>> e4m3.is_float_code, e4m3.torch_dtype
    (True, torch.float8_e4m3fn)
    """

    name: str
    bits: int
    signed: bool
    qmin: int | None
    qmax: int | None
    code_dtype: str
    kind: Kind = "int"
    packing: Packing | None = None
    description: str = ""
    affine: bool = True
    exponent_bits: int | None = None
    mantissa_bits: int | None = None
    max_value: float | None = None
    has_inf: bool = False
    has_nan: bool = False
    scale_dtype: str | None = None

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
            return out
        if self.kind == "float_code":
            return out + self._float_code_problems()
        set_fields = [f for f, default in _FLOAT_FIELDS.items() if getattr(self, f) != default]
        if set_fields and self.kind in ("int", "float"):
            out.append(f"{', '.join(set_fields)} describe a float code format; they need kind='float_code'")
        if self.kind == "float":
            if self.qmin is not None or self.qmax is not None:
                out.append("a float target has no qmin/qmax; pass None for both")
            if not self.affine:
                out.append("a float target cannot be a codebook (affine=False)")
            if self.code_dtype in _INT_CONTAINERS or self.code_dtype == "float8_e8m0fnu":
                out.append(f"a float target casts to a float dtype, not {self.code_dtype!r}")
            return out
        if self.kind != "int":
            out.append(f"kind must be 'int' or 'float' (a cast target), or 'float_code'; got {self.kind!r}")
            return out
        if self.code_dtype not in _INT_CONTAINERS:
            out.append(
                f"an integer dtype holds codes in one of {list(_INT_CONTAINERS)}, not {self.code_dtype!r}"
            )
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
        info = torch.iinfo(_CONTAINERS[self.code_dtype])
        if self.qmin < info.min or self.qmax > info.max:
            out.append(f"[{self.qmin}, {self.qmax}] does not fit code_dtype {self.code_dtype!r}")
        if self.packing is not None:
            out += self._packing_problems(self.qmin, self.qmax)
        return out

    def _packing_problems(self, lo: int, hi: int) -> list[str]:
        """Problems of :attr:`packing` for stored codes ``lo..hi`` (before the offset)."""
        assert self.packing is not None
        p, out = self.packing, []
        if p.bits != self.bits:
            out.append(f"packing.bits ({p.bits}) must equal bits ({self.bits})")
        if p.container not in ("uint8", "int32", "int16"):
            out.append(f"packing.container must be uint8, int16 or int32, got {p.container!r}")
        else:
            width = torch.iinfo(_CONTAINERS[p.container]).bits
            if p.bits * p.per_container > width:
                out.append(f"{p.per_container} codes of {p.bits} bits do not fit one {p.container}")
        if not (lo + p.offset >= 0 and hi + p.offset < 2**p.bits):
            out.append(f"offset {p.offset} does not map [{lo}, {hi}] into [0, {2**p.bits - 1}]")
        if p.order not in ("low_first", "high_first"):
            out.append(f"packing.order must be low_first or high_first, got {p.order!r}")
        return out

    def _float_code_problems(self) -> list[str]:
        out: list[str] = []
        if self.qmin is not None or self.qmax is not None:
            out.append("a float code dtype has no qmin/qmax; pass None for both")
        if not self.affine:
            out.append("a float code dtype cannot be a codebook (affine=False)")
        e, m = self.exponent_bits, self.mantissa_bits
        if not (isinstance(e, int) and e >= 1 and isinstance(m, int) and m >= 0):
            return out + [
                f"exponent_bits must be an int >= 1 and mantissa_bits an int >= 0; got {e!r}, {m!r}"
            ]
        if self.bits != e + m + int(self.signed):
            out.append(
                f"bits ({self.bits}) must be exponent_bits + mantissa_bits"
                f"{' + 1 (the sign bit)' if self.signed else ''} = {e + m + int(self.signed)}"
            )
        if self.has_inf and not self.has_nan:
            out.append("a format with inf encodings has NaN encodings too (has_inf implies has_nan)")
        if self.has_nan and not self.has_inf and m == 0:
            out.append("a NaN-only format needs mantissa bits (its NaN is the all-ones code)")
        else:
            want = float_format_max(e, m, has_inf=self.has_inf, has_nan=self.has_nan)
            if self.max_value != want:
                out.append(
                    f"max_value must be the format's largest finite value {want!r}, got {self.max_value!r}"
                )
        if self.code_dtype in _FLOAT8_FORMATS:
            if _FLOAT8_FORMATS[self.code_dtype] != (e, m, self.has_inf, self.has_nan) or not self.signed:
                fe, fm, finf, fnan = _FLOAT8_FORMATS[self.code_dtype]
                out.append(
                    f"code_dtype {self.code_dtype!r} holds signed E{fe}M{fm} (inf: {finf}, NaN: {fnan}); "
                    f"this entry describes {'signed' if self.signed else 'unsigned'} E{e}M{m} "
                    f"(inf: {self.has_inf}, NaN: {self.has_nan})"
                )
        elif self.code_dtype != "uint8":
            out.append(
                f"float codes are held as a torch float8 dtype ({', '.join(_FLOAT8_FORMATS)}) or as bit "
                f"patterns in 'uint8'; got code_dtype {self.code_dtype!r}"
            )
        elif self.bits > 8:
            out.append(f"{self.bits}-bit codes do not fit code_dtype 'uint8'")
        if self.packing is not None:
            if self.code_dtype != "uint8":
                out.append(f"only bit patterns in 'uint8' are packed, not {self.code_dtype!r} codes")
            else:
                out += self._packing_problems(0, 2**self.bits - 1)
        if self.scale_dtype is not None and self.scale_dtype not in SCALE_DTYPES:
            out.append(f"scale_dtype must be None or one of {list(SCALE_DTYPES)}, got {self.scale_dtype!r}")
        return out

    @property
    def is_float(self) -> bool:
        """True for a passthrough float target (float16, bfloat16): quantizing is a plain cast."""
        return self.kind == "float"

    @property
    def is_float_code(self) -> bool:
        """True for scaled float codes (FP8, E2M1): ``value(q) * scale``, no zero-point."""
        return self.kind == "float_code"

    @property
    def levels(self) -> int:
        """Number of integer codes, ``qmax - qmin + 1`` (0 for both float kinds)."""
        if self.qmin is None or self.qmax is None:
            return 0
        return self.qmax - self.qmin + 1

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of unpacked codes (or of the cast, for a float target)."""
        return _CONTAINERS[self.code_dtype]

    def to_dict(self) -> dict[str, object]:
        """The entry as a JSON-ready dict; float format fields only where they are set.

        >>> QuantDtype("int8", 8, True, -128, 127, "int8").to_dict()["qmax"]
        127
        >>> "max_value" in QuantDtype("int8", 8, True, -128, 127, "int8").to_dict()
        False
        """
        data = dataclasses.asdict(self)
        data["packing"] = None if self.packing is None else self.packing.to_dict()
        if self.kind != "float_code":
            for f in _FLOAT_FIELDS:
                del data[f]
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
