"""What the suite varies beyond what is installed: synthetic dtypes and every declared profile."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mono_quant.conformance._results import CheckSkipped

if TYPE_CHECKING:
    from mono_quant.conformance._catalog import Case
    from mono_quant.conformance._selection import Subject
    from mono_quant.core import QuantDtype, Scheme

__all__ = [
    "CUSTOM_PROFILE",
    "SYNTHETIC_PREFIX",
    "SYNTHETIC_SOURCE",
    "case_scheme",
    "case_setup",
    "extra_profiles",
    "synthetic_dtypes",
    "synthetic_dtypes_registered",
]

#: What every synthetic dtype's name starts with.
SYNTHETIC_PREFIX = "synthetic-"
#: The provider name the registry records for the synthetic dtypes.
SYNTHETIC_SOURCE = "mono-quant-conformance (synthetic test dtype)"

#: The explicit parameters a scheme that declares the ``custom`` profile is run with:
#: a floor and an unsigned symmetric zero-point that no named profile has.
CUSTOM_PROFILE: dict[str, object] = {"eps": 2.0**-14, "unsigned_symmetric_zero_point": "midpoint_down"}


def synthetic_dtypes() -> list[QuantDtype]:
    """The dtypes the suite registers for its own run.

    A scheme that claims every affine integer dtype (``dtypes=None``) is checked on
    them too, so its claim is tested beyond the dtypes installed where its CI runs:
    ranges narrower than their container, odd widths, a narrow signed range, packed
    layouts other than core's nibbles. The codebook entry (``affine=False``) is one
    no affine scheme may accept.

    >>> [d.name for d in synthetic_dtypes()][:2]
    ['synthetic-int3', 'synthetic-uint4']
    """
    from mono_quant.core import Packing, QuantDtype

    return [
        QuantDtype(
            "synthetic-int3", 3, True, -4, 3, "int8",
            packing=Packing(3, 2, "uint8", offset=4), description="signed 3-bit, two per byte",
        ),
        QuantDtype(
            "synthetic-uint4", 4, False, 0, 15, "uint8",
            packing=Packing(4, 2, "uint8", order="high_first"), description="unsigned 4-bit, high first",
        ),
        QuantDtype(
            "synthetic-int12", 12, True, -2048, 2047, "int16",
            packing=Packing(12, 2, "int32", offset=2048), description="signed 12-bit, two per int32",
        ),
        QuantDtype("synthetic-uint16", 16, False, 0, 65535, "int32", description="unsigned 16-bit range"),
        QuantDtype("synthetic-int8-narrow", 8, True, -127, 127, "int8", description="signed, -127..127"),
        QuantDtype(
            "synthetic-codebook4", 4, False, 0, 15, "uint8", affine=False,
            description="indices into a codebook: no affine scheme may accept it",
        ),
    ]  # fmt: skip


@contextlib.contextmanager
def synthetic_dtypes_registered() -> Iterator[list[str]]:
    """The synthetic dtypes registered in core's registry for the ``with`` block (names added)."""
    from mono_quant.core import temporary_dtypes

    with temporary_dtypes(synthetic_dtypes(), source=SYNTHETIC_SOURCE) as added:
        yield added


def extra_profiles(scheme: Scheme) -> list[str]:
    """The profiles the scheme declares beyond the one it is registered with.

    Named profiles core knows, and ``custom`` (run with :data:`CUSTOM_PROFILE`).
    """
    from mono_quant.core import PROFILES

    own = scheme.profile.name
    return [p for p in scheme.capabilities.profiles if p != own and (p in PROFILES or p == "custom")]


def case_scheme(subject: Subject, case: Case) -> Scheme:
    """The subject's scheme, configured with the case's profile (the registered one if none)."""
    scheme = subject.get_scheme()
    if case.profile is None:
        return scheme
    if case.profile == "custom":
        return scheme.configure(**CUSTOM_PROFILE)  # type: ignore[arg-type]
    return scheme.configure(profile=case.profile)


def case_setup(subject: Subject, case: Case) -> tuple[Scheme, QuantDtype, str]:
    """``(scheme, quant dtype, granularity kind)`` of a per-dtype-and-granularity case."""
    from mono_quant.core import get_dtype

    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    return case_scheme(subject, case), get_dtype(case.dtype), case.granularity
