"""What to do, resolved once: the configured scheme, dtype, granularity, selection and policies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from mono_quant.cli._errors import UsageError
from mono_quant.cli._options import DEFAULT_SCHEME, DEFAULT_SQNR_THRESHOLD, NONDIVISIBLE, NONFINITE, option
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

__all__ = [
    "DEFAULT_SCHEME",
    "DEFAULT_SQNR_THRESHOLD",
    "NonDivisible",
    "NonFinite",
    "Plan",
    "make_plan",
    "parse_granularity",
]

NonFinite = Literal["raise", "skip"]
#: ``raise`` and ``pad`` are the scheme's own policies; ``skip`` copies such a tensor unquantized.
NonDivisible = Literal["raise", "pad", "skip"]

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
    nondivisible: NonDivisible = "raise"

    def group_misfit(self, shape: tuple[int, ...]) -> str | None:
        """Why this plan's group size does not divide ``shape`` along its axis, or ``None`` if it does.

        >>> p = make_plan(scheme="int4-symmetric", group_size=128)
        >>> p.group_misfit((8, 256)) is None, p.group_misfit((8, 4, 3, 3))
        (True, 'group size 128 does not divide dimension 3 (size 3)')
        """
        gran = self.granularity
        if self.dtype.is_float or not isinstance(gran, PerGroup) or not shape:
            return None
        axis = gran.axis % len(shape) if -len(shape) <= gran.axis < len(shape) else None
        if axis is None or shape[axis] % gran.group_size == 0:
            return None
        return f"group size {gran.group_size} does not divide dimension {axis} (size {shape[axis]})"

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
            "nondivisible": self.nondivisible,
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
            raise UsageError(
                f"per-tensor takes neither {option('axis', None)} nor {option('group_size', None)}."
            )
        return PerTensor()
    if kind == "per_channel":
        if group_size is not None:
            raise UsageError(
                f"{option('group_size', None)} applies to per-group only; drop it or use "
                f"{option('granularity', 'per-group')}."
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
    nondivisible: NonDivisible = "raise",
    preferred_profile: str | None = None,
) -> Plan:
    """Resolve and check every option before any tensor is read.

    Unknown schemes, dtypes and profiles raise the core errors, which list what
    is installed; a dtype or granularity the scheme does not declare is refused here.
    ``preferred_profile`` is used when ``profile`` is not given and the scheme
    declares it (compressed-tensors output prefers its own).

    >>> p = make_plan(scheme="symmetric", dtype="int8")
    >>> p.dtype.name, str(p.granularity)
    ('int8', 'per-channel(axis=0)')
    """
    if nonfinite not in NONFINITE:
        raise UsageError(f"nonfinite must be one of {', '.join(NONFINITE)}; got {nonfinite!r}.")
    if nondivisible not in NONDIVISIBLE:
        raise UsageError(f"nondivisible must be one of {', '.join(NONDIVISIBLE)}; got {nondivisible!r}.")
    bad_size = isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
    if group_size is not None and bad_size:
        raise UsageError(f"group_size must be a whole number of at least 1; got {group_size!r}.")
    sch = scheme if isinstance(scheme, Scheme) else get_scheme(scheme)
    if profile is None and preferred_profile in sch.capabilities.profiles:
        profile = preferred_profile  # the output format's own convention, when the scheme has it
    if profile is not None:
        sch = sch.configure(profile=profile)
    if nondivisible == "pad":
        if "pad" not in sch.capabilities.nondivisible:
            raise UsageError(
                f"scheme {sch.name!r} does not accept {option('nondivisible', 'pad')}; it accepts: "
                f"{', '.join(sch.capabilities.nondivisible)} (and skip: copy such tensors unquantized)."
            )
        sch = sch.configure(nondivisible="pad")
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
    selection = Selection(tuple(include), tuple(exclude), frozenset(names) if names is not None else None)
    return Plan(sch, qd, gran, selection, nonfinite, float(sqnr_threshold), nondivisible)
