"""The catalog of checks: each a plain function, registered with what it is parametrized over."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mono_quant.conformance._runner import CheckContext
    from mono_quant.conformance._selection import Subject

__all__ = ["API_CHECKS", "Case", "Check", "CheckFunction", "Over", "all_checks", "conformance_check"]

#: What a check is parametrized over: once per distribution, per scheme, per integer
#: dtype, per integer dtype and granularity kind (and, for value checks, per declared
#: profile), per float target, per packed dtype, per float code dtype (FP8, E2M1), per
#: float code dtype, granularity kind and profile.
Over = Literal[
    "distribution",
    "scheme",
    "dtype",
    "dtype_granularity",
    "dtype_granularity_profile",
    "float_target",
    "packed_dtype",
    "float_code",
    "float_code_granularity_profile",
]

CheckFunction = Callable[["Subject", "Case", "CheckContext"], None]

#: Modules that define checks, in the order their checks run.
_CHECK_MODULES = (
    "mono_quant.conformance._checks_registration",
    "mono_quant.conformance._checks_shapes",
    "mono_quant.conformance._checks_values",
    "mono_quant.conformance._checks_policies",
    "mono_quant.conformance._checks_grid",
    "mono_quant.conformance._checks_paths",
    "mono_quant.conformance._checks_inputs",
    "mono_quant.conformance._checks_state",
    "mono_quant.conformance._checks_golden",
    "mono_quant.conformance._checks_packing",
    "mono_quant.conformance._checks_float",
    "mono_quant.conformance._checks_float_policies",
)

#: The stable "API checks": their names and meaning do not change within a major
#: version. Property checks may be added or tightened in any release.
API_CHECKS: tuple[str, ...] = (
    "check_distribution_loads",
    "check_registered_dtypes_are_valid",
    "check_scheme_declares_name_version_and_capabilities",
    "check_defaults_apply_when_nothing_is_named",
    "check_unsupported_requests_are_refused",
    "check_qparams_describe_their_producer",
    "check_qparam_shapes_and_dtypes",
    "check_float_targets_are_a_plain_cast",
    "check_zero_dim_input_per_tensor",
)


@dataclass(frozen=True)
class Case:
    """One parametrization of a check: a quant dtype, a granularity kind and a profile, all optional.

    ``profile`` is ``None`` for the scheme as registered (its default profile); a
    value check also runs once per other profile the scheme declares.

    >>> Case("int8", "per_channel").label
    'int8-per_channel'
    >>> Case("int8", "per_tensor", "torchao").label
    'int8-per_tensor-torchao'
    >>> Case().label
    ''
    """

    dtype: str | None = None
    granularity: str | None = None
    profile: str | None = None

    @property
    def label(self) -> str:
        """The case part of a test id."""
        return "-".join(p for p in (self.dtype, self.granularity, self.profile) if p)


@dataclass(frozen=True)
class Check:
    """A registered check: its function, what it runs over, and whether it is an API check."""

    name: str
    func: CheckFunction
    over: Over
    api: bool

    @property
    def summary(self) -> str:
        """The first line of the check's docstring: what it asserts."""
        doc = (self.func.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name

    @property
    def module(self) -> str:
        """The module that defines the check."""
        return self.func.__module__


_REGISTRY: dict[str, Check] = {}


def _same_source(a: CheckFunction, b: CheckFunction) -> bool:
    ca, cb = getattr(a, "__code__", None), getattr(b, "__code__", None)
    if ca is None or cb is None:
        return False
    return bool((ca.co_filename, ca.co_firstlineno) == (cb.co_filename, cb.co_firstlineno))


def conformance_check(over: Over) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under its own name, parametrized over ``over``.

    The function takes ``(subject, case, ctx)`` and raises
    :class:`~mono_quant.conformance.ConformanceError` when the scheme breaks the
    property, or :class:`~mono_quant.conformance.CheckSkipped` when it does not apply.
    """

    def register(func: CheckFunction) -> CheckFunction:
        name = func.__name__
        if not name.startswith("check_"):
            raise ValueError(f"check functions are named check_<behaviour>; got {name!r}.")
        known = _REGISTRY.get(name)
        if known is not None:
            if _same_source(known.func, func):
                return func  # the same module imported twice (doctest collection does that)
            raise ValueError(f"two checks are called {name!r}: in {known.module} and {func.__module__}.")
        _REGISTRY[name] = Check(name, func, over, name in API_CHECKS)
        return func

    return register


def all_checks() -> list[Check]:
    """Every registered check, in run order (imports the check modules, and so torch).

    >>> from mono_quant.conformance import all_checks
    >>> names = [c.name for c in all_checks()]
    >>> names[0], "check_zero_range_gives_finite_scale" in names
    ('check_distribution_loads', True)
    """
    for module in _CHECK_MODULES:
        importlib.import_module(module)
    stems = [m.rsplit(".", 1)[1] for m in _CHECK_MODULES]

    def order(check: Check) -> tuple[int, int]:
        code = check.func.__code__
        stem = Path(code.co_filename).stem
        return (stems.index(stem) if stem in stems else len(stems), code.co_firstlineno)

    return sorted(_REGISTRY.values(), key=order)
