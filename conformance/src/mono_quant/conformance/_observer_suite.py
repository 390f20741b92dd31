"""Observers under test: subjects, the observer check catalog, planning, and their pytest items.

Observer checks run through the same :class:`~mono_quant.conformance.Runner` as
scheme checks (seeds, expected failures and results are classified one way), and
their items join the scheme items under ``--mono-quant-conformance``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from mono_quant.conformance._catalog import Case
from mono_quant.conformance._selection import SelectionError, canonical

if TYPE_CHECKING:
    import pytest

    from mono_quant.conformance._results import CheckResult
    from mono_quant.conformance._runner import CheckContext, PlannedCheck, Runner
    from mono_quant.core import Granularity, Observer

__all__ = [
    "ObserverCheck",
    "ObserverSubject",
    "PlannedObserverCheck",
    "all_observer_checks",
    "execute",
    "observer_check",
    "observer_check_names",
    "observer_items",
    "plan_observers",
    "resolve_observer_subjects",
]

#: Observer checks run once per observer, or once per granularity kind it claims.
ObserverOver = Literal["observer", "observer_granularity"]
ObserverCheckFunction = Callable[["ObserverSubject", Case, "CheckContext"], None]

_CHECK_MODULES = (
    "mono_quant.conformance._checks_observers",
    "mono_quant.conformance._checks_observer_inputs",
)
_REGISTRY: dict[str, ObserverCheck] = {}


@dataclass(frozen=True)
class ObserverSubject:
    """One observer under test: its class and the distribution that registered it.

    ``cls`` builds fresh observers (:meth:`new`); ``registered`` is ``False`` for an
    observer class passed in process rather than installed.
    """

    distribution: str
    version: str
    cls: type[Observer]
    registered: bool = True

    @property
    def name(self) -> str:
        """The observer's registered name."""
        return self.cls.name

    @property
    def id(self) -> str:
        """``<distribution>:<observer>``."""
        return f"{self.distribution}:{self.name}"

    def new(self, granularity: Granularity | None = None, **options: Any) -> Observer:
        """A fresh observer of this class."""
        obs = self.cls(granularity, **options)
        obs.distribution = self.distribution
        return obs

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (a ``subjects`` entry of the summary file)."""
        return {
            "id": self.id,
            "distribution": self.distribution,
            "version": self.version,
            "observer": self.name,
            "observer_version": self.cls.version,
            "registered": self.registered,
            "capabilities": self.cls.capabilities.to_dict(),
        }

    def header_line(self) -> str:
        """One line for the report header: the observer and what it claims."""
        caps = self.cls.capabilities
        order = "order-free" if caps.order_free else "order-dependent"
        return (
            f"{self.id} {self.cls.version} (observer): granularities {', '.join(caps.granularities)}; "
            f"nonfinite {'/'.join(caps.nonfinite)}; {order}; merge {caps.merge}; "
            f"reference {caps.reference or 'none'}"
        )


@dataclass(frozen=True)
class ObserverCheck:
    """A registered observer check: a plain function and what it is parametrized over."""

    name: str
    func: ObserverCheckFunction
    over: ObserverOver

    @property
    def summary(self) -> str:
        """The first line of the check's docstring: what it asserts."""
        doc = (self.func.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name


def _source(func: ObserverCheckFunction) -> tuple[str, int]:
    code = func.__code__
    return code.co_filename, code.co_firstlineno


def observer_check(over: ObserverOver) -> Callable[[ObserverCheckFunction], ObserverCheckFunction]:
    """Register an observer check under its own name (``check_observer_<behaviour>``)."""

    def register(func: ObserverCheckFunction) -> ObserverCheckFunction:
        name = func.__name__
        if not name.startswith("check_observer_"):
            raise ValueError(f"observer checks are named check_observer_<behaviour>; got {name!r}.")
        known = _REGISTRY.get(name)
        # The same module imported twice (doctest collection does that) registers the same source.
        if known is not None and _source(known.func) != _source(func):
            raise ValueError(
                f"two observer checks are called {name!r}: in {_source(known.func)} and {_source(func)}."
            )
        _REGISTRY[name] = ObserverCheck(name, func, over)
        return func

    return register


def all_observer_checks() -> list[ObserverCheck]:
    """Every observer check, in the order they are defined.

    >>> names = [c.name for c in all_observer_checks()]
    >>> "check_observer_merge_equals_sequential_observation" in names
    True
    """
    for module in _CHECK_MODULES:
        importlib.import_module(module)

    def order(check: ObserverCheck) -> tuple[int, int]:
        return _CHECK_MODULES.index(check.func.__module__), check.func.__code__.co_firstlineno

    return sorted(_REGISTRY.values(), key=order)


@dataclass(frozen=True)
class PlannedObserverCheck:
    """One observer check on one observer and case; quacks like a planned scheme check."""

    check: ObserverCheck
    subject: ObserverSubject
    case: Case

    @property
    def params(self) -> str:
        """``<distribution>:<observer>-<granularity kind>``."""
        return "-".join(p for p in (self.subject.id, self.case.label) if p)

    @property
    def id(self) -> str:
        """The test id: ``check_observer_...[<distribution>:<observer>-<case>]``."""
        return f"{self.check.name}[{self.params}]"


def plan_observers(
    subjects: Sequence[ObserverSubject], checks: Iterable[ObserverCheck] | None = None
) -> list[PlannedObserverCheck]:
    """Every (check, observer, case), grouped by observer."""
    chosen = list(all_observer_checks() if checks is None else checks)
    out = []
    for subject in subjects:
        for check in chosen:
            if check.over == "observer":
                out.append(PlannedObserverCheck(check, subject, Case()))
            else:
                kinds = subject.cls.capabilities.granularities
                out += [PlannedObserverCheck(check, subject, Case(granularity=k)) for k in kinds]
    return out


def execute(runner: Runner, planned: PlannedObserverCheck) -> CheckResult:
    """Run one observer check through ``runner`` (it reads only what both kinds of planned check have)."""
    return runner.execute(cast("PlannedCheck", planned))


def resolve_observer_subjects(
    selection: Sequence[str | type[Observer]] | None,
) -> tuple[list[ObserverSubject], list[str]]:
    """The observers a selection names, and the names left for the scheme selection.

    ``None`` or an empty selection selects every installed observer (and leaves
    the scheme selection empty: all schemes). An observer name is consumed; a
    distribution name selects its observers and stays for the scheme selection
    (the distribution's own checks); other names pass through. Observer classes
    are tested in process.
    """
    from mono_quant.core import Observer, get_observer, list_observers, plugin_report

    report = plugin_report()
    installed = set(list_observers())
    sources: dict[str, tuple[str, str]] = {}
    for record in report.plugins:
        if record.status == "loaded":
            for name in record.observers:
                sources.setdefault(name, (record.distribution, record.version))

    def installed_subject(name: str) -> ObserverSubject:
        obs = get_observer(name)
        dist, version = sources.get(name, (obs.distribution, "?"))
        return ObserverSubject(dist, version, type(obs))

    subjects: list[ObserverSubject] = []
    rest: list[str] = []
    if not selection:
        return [
            installed_subject(n) for n in sorted(installed, key=lambda n: (sources.get(n, ("",))[0], n))
        ], []
    for item in selection:
        if isinstance(item, type) and issubclass(item, Observer):
            subjects.append(ObserverSubject("local", item.version or "?", item, registered=False))
            continue
        if not isinstance(item, str):
            raise SelectionError(f"select observers by name or Observer class, got {type(item).__name__}.")
        if item in installed:
            subjects.append(installed_subject(item))
            continue
        dist_observers = sorted(n for n, (d, _) in sources.items() if canonical(d) == canonical(item))
        subjects += [installed_subject(n) for n in dist_observers if n in installed]
        rest.append(item)
    seen: set[str] = set()
    unique = [s for s in subjects if not (s.id in seen or seen.add(s.id))]  # type: ignore[func-returns-value]
    return unique, rest


def observer_items(parent: pytest.Collector, subjects: Sequence[ObserverSubject]) -> list[pytest.Item]:
    """The pytest items of every observer check on ``subjects`` (for the suite's collector)."""
    from mono_quant.conformance.plugin import ConformanceItem

    return [
        ConformanceItem.from_parent(parent, name=p.id, planned=cast("PlannedCheck", p))
        for p in plan_observers(subjects)
    ]


def observer_check_names() -> list[str]:
    """Names of every observer check (expected failures may name them)."""
    return [c.name for c in all_observer_checks()]
