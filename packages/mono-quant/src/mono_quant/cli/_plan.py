"""What to do, resolved once: the configured scheme, dtype, granularity, selection and policies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from mono_quant.cli._errors import UsageError
from mono_quant.cli._select import Selection
from mono_quant.core import (
    Granularity,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    Scheme,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    get_dtype,
    get_scheme,
)

__all__ = ["DEFAULT_SCHEME", "DEFAULT_SQNR_THRESHOLD", "NonFinite", "Plan", "make_plan", "parse_granularity"]

DEFAULT_SCHEME = "asymmetric"
#: Tensors whose SQNR falls below this many dB are flagged in the report.
DEFAULT_SQNR_THRESHOLD = 10.0

NonFinite = Literal["raise", "skip"]

_KINDS = {
    "per-tensor": "per_tensor",
    "per_tensor": "per_tensor",
    "tensor": "per_tensor",
    "per-channel": "per_channel",
    "per_channel": "per_channel",
    "channel": "per_channel",
    "per-group": "per_group",
    "per_group": "per_group",
    "group": "per_group",
}


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to quantize one tensor, checked before any tensor is read."""

    scheme: Scheme
    dtype: QuantDtype
    granularity: Granularity
    selection: Selection = field(default_factory=Selection)
    nonfinite: NonFinite = "raise"
    sqnr_threshold: float = DEFAULT_SQNR_THRESHOLD

    def describe(self) -> dict[str, Any]:
        """The plan as JSON-ready data (for reports)."""
        return {
            "scheme": self.scheme.name,
            "scheme_version": self.scheme.version,
            "scheme_distribution": self.scheme.distribution,
            "profile": self.scheme.profile.name,
            "dtype": self.dtype.name,
            "granularity": self.granularity.to_dict(),
            "nonfinite": self.nonfinite,
            "sqnr_threshold_db": self.sqnr_threshold,
        }


def parse_granularity(
    granularity: Granularity | str | None,
    *,
    axis: int | None = None,
    group_size: int | None = None,
    scheme: Scheme,
) -> Granularity:
    """A granularity from a name (``per-channel``, ...) and ``axis``/``group_size``, or the default.

    With no name: per-group when ``group_size`` is given or the scheme's own default
    is per-group (the int4 schemes: group 128 along the last axis); otherwise
    per-channel along axis 0 (one scale per output row of a weight), or the
    scheme's default if it cannot do per-channel.

    >>> from mono_quant.core import get_scheme
    >>> parse_granularity(None, scheme=get_scheme("asymmetric"))
    PerChannel(axis=0, kind='per_channel')
    >>> parse_granularity("per-group", group_size=64, scheme=get_scheme("asymmetric"))
    PerGroup(axis=-1, group_size=64, kind='per_group')
    """
    if isinstance(granularity, (PerTensor, PerChannel, PerGroup)):
        if axis is not None or group_size is not None:
            raise UsageError("pass axis/group_size inside the granularity object, not beside it.")
        return granularity
    default = scheme.capabilities.default_granularity
    if granularity is None:
        if group_size is not None or isinstance(default, PerGroup):
            kind = "per_group"
        elif "per_channel" in scheme.capabilities.granularities:
            kind = "per_channel"
        else:
            kind = default.kind
    else:
        if granularity not in _KINDS:
            raise UsageError(
                f"unknown granularity {granularity!r}; expected per-tensor, per-channel or per-group."
            )
        kind = _KINDS[granularity]
    if kind == "per_tensor":
        if axis is not None or group_size is not None:
            raise UsageError("per-tensor takes neither --axis nor --group-size.")
        return PerTensor()
    if kind == "per_channel":
        if group_size is not None:
            raise UsageError(
                "--group-size applies to per-group only; drop it or use --granularity per-group."
            )
        return PerChannel(0 if axis is None else axis)
    base = default if isinstance(default, PerGroup) else PerGroup()
    return PerGroup(
        base.axis if axis is None else axis, base.group_size if group_size is None else group_size
    )


def make_plan(
    *,
    scheme: str | Scheme = DEFAULT_SCHEME,
    dtype: str | None = None,
    granularity: Granularity | str | None = None,
    axis: int | None = None,
    group_size: int | None = None,
    profile: str | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    names: Iterable[str] | None = None,
    nonfinite: NonFinite = "raise",
    sqnr_threshold: float = DEFAULT_SQNR_THRESHOLD,
) -> Plan:
    """Resolve and check every option before any tensor is read.

    Unknown schemes, dtypes and profiles raise the core errors, which list what
    is installed; a dtype or granularity the scheme does not declare is refused here.

    >>> p = make_plan(scheme="symmetric", dtype="int8")
    >>> p.dtype.name, str(p.granularity)
    ('int8', 'per-channel(axis=0)')
    """
    sch = scheme if isinstance(scheme, Scheme) else get_scheme(scheme)
    if profile is not None:
        sch = sch.configure(profile=profile)
    qd = get_dtype(dtype or sch.capabilities.default_dtype)
    if not sch.supports_dtype(qd):
        supported = sch.capabilities.dtypes or ()
        raise UnsupportedDtypeError(
            f"scheme {sch.name!r} does not support dtype {qd.name!r}; it supports: "
            f"{', '.join(supported)} (and the float targets float16, bfloat16)."
        )
    gran = parse_granularity(granularity, axis=axis, group_size=group_size, scheme=sch)
    if not qd.is_float and gran.kind not in sch.capabilities.granularities:
        raise UnsupportedGranularityError(
            f"scheme {sch.name!r} does not support {gran}; it supports: "
            f"{', '.join(sch.capabilities.granularities)}."
        )
    if nonfinite not in ("raise", "skip"):
        raise UsageError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}.")
    selection = Selection(tuple(include), tuple(exclude), frozenset(names) if names is not None else None)
    return Plan(sch, qd, gran, selection, nonfinite, float(sqnr_threshold))
