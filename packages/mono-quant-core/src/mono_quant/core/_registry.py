"""Plugin discovery and the registry of dtypes, schemes and observers, loaded lazily and isolated."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import inspect
import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from mono_quant.core import _builtins, _hookspecs
from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import (
    PluginLoadError,
    RegistryConflictError,
    UnknownDtypeError,
    UnknownSchemeError,
    UnsupportedOptionError,
)
from mono_quant.core._granularity import Granularity
from mono_quant.core._observer import (
    Observer,
    ObserverCapabilities,
    ObserverNonFinitePolicy,
    UnknownObserverError,
)
from mono_quant.core._scheme import Capabilities, Scheme

__all__ = [
    "KNOWN_PROVIDERS",
    "PluginRecord",
    "PluginReport",
    "PluginWarning",
    "get_dtype",
    "get_observer",
    "get_scheme",
    "list_dtypes",
    "list_observers",
    "list_schemes",
    "plugin_report",
    "reload_plugins",
    "temporary_dtypes",
]

CORE_DISTRIBUTION = "mono-quant-core"
DISABLE_ENV = "MONO_QUANT_DISABLE_PLUGINS"
STRICT_ENV = "MONO_QUANT_STRICT_PLUGINS"

#: Names shipped by first-party distributions, so a missing one can say what to install.
KNOWN_PROVIDERS: dict[str, str] = {
    "symmetric": "mono-quant-sym",
    "asymmetric": "mono-quant-asym",
    "int4": "mono-quant-int4",
    "uint4": "mono-quant-int4",
    "int4-symmetric": "mono-quant-int4",
    "int4-asymmetric": "mono-quant-int4",
    "fp8": "mono-quant-fp8",
    "mxfp4": "mono-quant-fp4",
    "nvfp4": "mono-quant-fp4",
    "minmax": "mono-quant-observers",
    "moving-average-minmax": "mono-quant-observers",
    "percentile": "mono-quant-observers",
    "histogram": "mono-quant-observers",
    "mse": "mono-quant-observers",
}

_HOOKS = ("mono_quant_dtypes", "mono_quant_schemes", "mono_quant_observers")


class PluginWarning(UserWarning):
    """A plugin failed to load, or two plugins registered the same name."""


@dataclass(frozen=True)
class PluginRecord:
    """One plugin as the loader saw it: where it came from, what it gave, or why it failed."""

    name: str
    distribution: str
    version: str
    status: Literal["loaded", "broken", "disabled"]
    schemes: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    error: str | None = None
    observers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "schemes": list(self.schemes),
            "dtypes": list(self.dtypes),
            "observers": list(self.observers),
            "error": self.error,
        }


@dataclass(frozen=True)
class PluginReport:
    """Every plugin the loader found (loaded, broken or disabled) and every name conflict.

    >>> report = plugin_report()
    >>> report.plugins[0].distribution
    'mono-quant-core'
    """

    plugins: tuple[PluginRecord, ...]
    conflicts: tuple[str, ...] = ()

    @property
    def broken(self) -> tuple[PluginRecord, ...]:
        """The plugins that failed to load."""
        return tuple(p for p in self.plugins if p.status == "broken")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``mono-quant plugins --json`` prints)."""
        return {
            "plugins": [p.to_dict() for p in self.plugins],
            "conflicts": list(self.conflicts),
        }


@dataclass
class _State:
    dtypes: dict[str, QuantDtype] = field(default_factory=dict)
    dtype_sources: dict[str, str] = field(default_factory=dict)
    schemes: dict[str, Scheme] = field(default_factory=dict)
    scheme_sources: dict[str, str] = field(default_factory=dict)
    observers: dict[str, type[Observer]] = field(default_factory=dict)
    observer_sources: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    report: PluginReport = field(default_factory=lambda: PluginReport(()))


_lock = threading.RLock()
_state: _State | None = None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_version() -> str:
    try:
        return md.version(CORE_DISTRIBUTION)
    except md.PackageNotFoundError:
        return "0+unknown"


def _disabled() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {_canonical(part.strip()) for part in raw.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Candidate:
    name: str
    distribution: str
    version: str
    obj: object = None
    error: str | None = None
    disabled: bool = False
    dtypes: list[QuantDtype] = field(default_factory=list)
    schemes: list[Scheme] = field(default_factory=list)
    observers: list[type[Observer]] = field(default_factory=list)


def _discover() -> list[_Candidate]:
    disabled = _disabled()
    out = [_Candidate("core", CORE_DISTRIBUTION, _core_version(), obj=_builtins)]
    eps = sorted(
        md.entry_points(group=_hookspecs.ENTRY_POINT_GROUP),
        key=lambda e: (e.dist.name if e.dist else "", e.name),
    )
    for ep in eps:
        dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        version = ep.dist.version if ep.dist is not None else "?"
        cand = _Candidate(ep.name, dist, version)
        if "all" in disabled or _canonical(ep.name) in disabled or _canonical(dist) in disabled:
            cand.disabled = True
        else:
            try:
                cand.obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - catching everything a plugin raises *is* the job
                cand.error = f"failed to import {ep.value!r}: {_describe_exc(exc)}"
        out.append(cand)
    return out


def _unmarked_hooks(obj: object, pm: pluggy.PluginManager) -> list[str]:
    """Functions named like hooks that lack the ``@hookimpl`` marker (pluggy ignores them)."""
    names = []
    for attr in dir(obj):
        is_hook_like = attr.startswith("mono_quant_") and callable(getattr(obj, attr, None))
        if is_hook_like and pm.parse_hookimpl_opts(obj, attr) is None:
            names.append(attr)
    return names


def _collect(cand: _Candidate, pm: pluggy.PluginManager) -> None:
    """Register one plugin, check its hooks and call them, recording any failure on it."""
    obj = cand.obj
    plugin_name = f"{cand.distribution}:{cand.name}"
    try:
        pm.register(obj, name=plugin_name)
    except Exception as exc:  # noqa: BLE001 - a malformed plugin must not stop the others
        cand.error = f"could not be registered: {_describe_exc(exc)}"
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(obj)
        cand.error = f"implements a hook that does not exist ({exc}); known hooks: {', '.join(_HOOKS)}"
        return
    unmarked = _unmarked_hooks(obj, pm)
    if unmarked:
        # pluggy would silently skip these: report the plugin rather than half-load it.
        pm.unregister(obj)
        cand.error = (
            f"defines {', '.join(unmarked)} without the @hookimpl marker, so pluggy would "
            f"ignore {'it' if len(unmarked) == 1 else 'them'}; decorate with mono_quant.core.hookimpl"
        )
        return
    impls = {hook: [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin is obj] for hook in _HOOKS}
    for hook, hook_impls in impls.items():
        for impl in hook_impls:
            try:
                result = impl.function()
                items = list(result) if isinstance(result, Iterable) else None
            except Exception as exc:  # noqa: BLE001 - catching everything a plugin raises *is* the job
                pm.unregister(obj)
                cand.error = f"hook {hook}() raised {_describe_exc(exc)}"
                return
            problem = _validate(hook, items)
            if problem:
                pm.unregister(obj)
                cand.error = f"hook {hook}() {problem}"
                return
            assert items is not None
            if hook == "mono_quant_dtypes":
                cand.dtypes.extend(items)
            elif hook == "mono_quant_observers":
                cand.observers.extend(items)
            else:
                cand.schemes.extend(items)


def _validate(hook: str, items: list[Any] | None) -> str | None:
    if items is None:
        return "must return an iterable (a list or tuple)"
    for item in items:
        if hook == "mono_quant_dtypes" and not isinstance(item, QuantDtype):
            return f"must return QuantDtype objects, got {type(item).__name__} {item!r}"
        if hook == "mono_quant_schemes":
            if inspect.isclass(item):
                return f"must return Scheme instances, got the class {item.__name__}; instantiate it"
            if not isinstance(item, Scheme):
                return f"must return Scheme instances, got {type(item).__name__} {item!r}"
            for attr in ("name", "version"):
                value = getattr(item, attr, None)
                if not isinstance(value, str) or not value:
                    return f"returned a scheme ({type(item).__name__}) without a {attr} string"
            if not isinstance(item.capabilities, Capabilities):
                return f"returned scheme {item.name!r} whose capabilities are not a Capabilities"
        if hook == "mono_quant_observers":
            problem = _observer_problem(item)
            if problem:
                return problem
    return None


def _observer_problem(item: object) -> str | None:
    if not inspect.isclass(item):
        return (
            f"must return Observer subclasses (classes: each user gets a fresh observer), "
            f"got {type(item).__name__} {item!r}"
        )
    if not issubclass(item, Observer):
        return f"must return Observer subclasses, got the class {item.__name__}"
    if inspect.isabstract(item):
        return f"returned the observer class {item.__name__}, which leaves abstract methods unimplemented"
    for attr in ("name", "version"):
        value = getattr(item, attr, None)
        if not isinstance(value, str) or not value:
            return f"returned an observer ({item.__name__}) without a {attr} string"
    if not isinstance(item.capabilities, ObserverCapabilities):
        return f"returned observer {item.name!r} whose capabilities are not an ObserverCapabilities"
    return None


def _merge(cands: list[_Candidate]) -> _State:
    state = _State()
    conflicts: list[str] = []
    for cand in cands:
        if cand.error or cand.disabled:
            continue
        for d in cand.dtypes:
            key = ("dtype", d.name)
            if key in state.ambiguous:
                state.ambiguous[key] += (cand.distribution,)
            elif d.name not in state.dtypes:
                state.dtypes[d.name] = d
                state.dtype_sources[d.name] = cand.distribution
            elif state.dtypes[d.name] == d:
                continue  # the same data again is harmless
            elif state.dtype_sources[d.name] == CORE_DISTRIBUTION:
                conflicts.append(
                    f"{cand.distribution} registers dtype {d.name!r} with different data than "
                    f"{CORE_DISTRIBUTION}; keeping {CORE_DISTRIBUTION}'s"
                )
            else:
                first = state.dtype_sources.pop(d.name)
                del state.dtypes[d.name]
                state.ambiguous[key] = (first, cand.distribution)
        for s in cand.schemes:
            key = ("scheme", s.name)
            if key in state.ambiguous:
                state.ambiguous[key] += (cand.distribution,)
            elif s.name not in state.schemes:
                state.schemes[s.name] = s
                state.scheme_sources[s.name] = cand.distribution
            else:
                first = state.scheme_sources.pop(s.name)
                del state.schemes[s.name]
                state.ambiguous[key] = (first, cand.distribution)
        for o in cand.observers:
            key = ("observer", o.name)
            if key in state.ambiguous:
                state.ambiguous[key] += (cand.distribution,)
            elif o.name not in state.observers:
                state.observers[o.name] = o
                state.observer_sources[o.name] = cand.distribution
            else:
                first = state.observer_sources.pop(o.name)
                del state.observers[o.name]
                state.ambiguous[key] = (first, cand.distribution)
    for (kind, name), sources in sorted(state.ambiguous.items()):
        conflicts.append(
            f"{kind} {name!r} is registered by {' and '.join(sources)} with different "
            f"definitions; it is unusable until one is disabled with {DISABLE_ENV}"
        )
    records = []
    for cand in cands:
        status: Literal["loaded", "broken", "disabled"] = (
            "disabled" if cand.disabled else "broken" if cand.error else "loaded"
        )
        records.append(
            PluginRecord(
                name=cand.name,
                distribution=cand.distribution,
                version=cand.version,
                status=status,
                schemes=tuple(s.name for s in cand.schemes) if status == "loaded" else (),
                dtypes=tuple(d.name for d in cand.dtypes) if status == "loaded" else (),
                error=cand.error,
                observers=tuple(o.name for o in cand.observers) if status == "loaded" else (),
            )
        )
    state.report = PluginReport(tuple(records), tuple(conflicts))
    return state


def _load() -> _State:
    pm = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
    pm.add_hookspecs(_hookspecs)
    cands = _discover()
    for cand in cands:
        if cand.error is None and not cand.disabled:
            _collect(cand, pm)
    state = _merge(cands)
    problems = [
        f"plugin {p.name!r} from {p.distribution} {p.version} {p.error}" for p in state.report.broken
    ] + list(state.report.conflicts)
    if problems and _strict():
        raise PluginLoadError(
            f"{len(problems)} plugin problem(s) with {STRICT_ENV}=1:\n  " + "\n  ".join(problems)
        )
    for problem in problems:
        warnings.warn(f"mono-quant: {problem}", PluginWarning, stacklevel=4)
    return state


def _get_state() -> _State:
    global _state
    with _lock:
        if _state is None:
            _state = _load()
        return _state


def reload_plugins() -> PluginReport:
    """Forget the loaded plugins and discover them again; return the new report.

    Call it after installing a plugin or changing ``MONO_QUANT_DISABLE_PLUGINS``.

    >>> reload_plugins().plugins[0].name
    'core'
    """
    global _state
    with _lock:
        _state = None
        return _get_state().report


def plugin_report() -> PluginReport:
    """What the loader found: each plugin's distribution, version, status, names and error.

    >>> [p.status for p in plugin_report().plugins if p.distribution == "mono-quant-core"]
    ['loaded']
    """
    return _get_state().report


def _missing_hint(name: str, state: _State) -> str:
    provider = KNOWN_PROVIDERS.get(name)
    if provider is None:
        return ""
    for rec in state.report.plugins:
        if _canonical(rec.distribution) == provider:
            if rec.status == "disabled":
                return f" {provider} is installed but disabled by {DISABLE_ENV}."
            if rec.status == "broken":
                return f" {provider} is installed but failed to load: {rec.error}."
    return f" Install {provider} to use it."


def get_dtype(name: str) -> QuantDtype:
    """The registered quant dtype called ``name``.

    >>> get_dtype("int8").qmin
    -128
    """
    state = _get_state()
    if name in state.dtypes:
        return state.dtypes[name]
    if ("dtype", name) in state.ambiguous:
        sources = state.ambiguous[("dtype", name)]
        raise RegistryConflictError(
            f"dtype {name!r} is registered differently by {' and '.join(sources)}; disable one "
            f"with {DISABLE_ENV}={sources[-1]}."
        )
    raise UnknownDtypeError(
        f"{name!r} is not a registered quant dtype.{_missing_hint(name, state)} "
        f"Registered: {', '.join(sorted(state.dtypes))}."
    )


def list_dtypes() -> list[str]:
    """Names of the registered quant dtypes, sorted.

    >>> "int8" in list_dtypes() and "float16" in list_dtypes()
    True
    """
    return sorted(_get_state().dtypes)


def list_schemes() -> list[str]:
    """Names of the schemes the installed plugins provide, sorted."""
    return sorted(_get_state().schemes)


def get_scheme(name: str, **options: Any) -> Scheme:
    """The scheme called ``name``, configured with ``options`` (see :meth:`Scheme.configure`).

    ``options`` are ``profile`` (``"default"``, ``"torchao"`` or a
    :class:`~mono_quant.core.Profile`), ``eps``, ``compute_dtype``,
    ``unsigned_symmetric_zero_point``, ``nonfinite`` and ``nondivisible``.

    >>> get_scheme("no-such-scheme")
    Traceback (most recent call last):
    ...
    mono_quant.core.UnknownSchemeError: 'no-such-scheme' is not an installed scheme. ...
    """
    state = _get_state()
    if name in state.schemes:
        scheme = state.schemes[name].configure(**options)
        scheme.distribution = state.scheme_sources[name]
        return scheme
    if ("scheme", name) in state.ambiguous:
        sources = state.ambiguous[("scheme", name)]
        raise RegistryConflictError(
            f"scheme {name!r} is provided by both {' and '.join(sources)}; disable one with "
            f"{DISABLE_ENV}={sources[-1]}."
        )
    installed = ", ".join(sorted(state.schemes)) or "none"
    raise UnknownSchemeError(
        f"{name!r} is not an installed scheme.{_missing_hint(name, state)} Installed schemes: {installed}."
    )


@contextlib.contextmanager
def temporary_dtypes(dtypes: Iterable[QuantDtype], *, source: str) -> Iterator[list[str]]:
    """Register ``dtypes`` until the ``with`` block ends; yield the names it added.

    For test suites that exercise schemes on dtypes no installed plugin provides
    (the conformance suite's synthetic dtypes). ``source`` is recorded as the
    provider, as a distribution's name would be. A name already registered with
    the same data is left as it is (and stays after the block); one registered with
    different data raises :class:`RegistryConflictError` naming both providers.
    :func:`reload_plugins` inside the block forgets the temporary entries.

    >>> from mono_quant.core import QuantDtype, get_dtype, list_dtypes
    >>> int3 = QuantDtype("demo-int3", bits=3, signed=True, qmin=-4, qmax=3, code_dtype="int8")
    >>> with temporary_dtypes([int3], source="doctest") as added:
    ...     added, get_dtype("demo-int3").qmax
    (['demo-int3'], 3)
    >>> "demo-int3" in list_dtypes()
    False
    """
    wanted = list(dtypes)
    with _lock:
        state = _get_state()
        for d in wanted:
            if not isinstance(d, QuantDtype):
                raise TypeError(f"temporary_dtypes takes QuantDtype entries, got {type(d).__name__} {d!r}.")
            known = state.dtypes.get(d.name)
            if known is not None and known != d:
                raise RegistryConflictError(
                    f"dtype {d.name!r} from {source} differs from the one {state.dtype_sources[d.name]} "
                    f"registers; pick another name for the temporary dtype."
                )
            if ("dtype", d.name) in state.ambiguous:
                raise RegistryConflictError(
                    f"dtype {d.name!r} from {source} is already registered differently by "
                    f"{' and '.join(state.ambiguous[('dtype', d.name)])}."
                )
        added = [d.name for d in wanted if d.name not in state.dtypes]
        for d in wanted:
            if d.name in added:
                state.dtypes[d.name] = d
                state.dtype_sources[d.name] = source
    try:
        yield added
    finally:
        with _lock:
            for name in added:
                state.dtypes.pop(name, None)
                state.dtype_sources.pop(name, None)


def list_observers() -> list[str]:
    """Names of the observers the installed plugins provide, sorted.

    >>> isinstance(list_observers(), list)
    True
    """
    return sorted(_get_state().observers)


def get_observer(
    name: str,
    granularity: Granularity | None = None,
    *,
    nonfinite: ObserverNonFinitePolicy = "raise",
    **options: Any,
) -> Observer:
    """A fresh observer called ``name`` keeping ``granularity`` statistics (per-tensor by default).

    ``options`` are the observer's own (``averaging_constant=``, ``bins=``, ...);
    an option it does not take is refused with the list of those it does.

    >>> get_observer("no-such-observer")
    Traceback (most recent call last):
    ...
    mono_quant.core.UnknownObserverError: 'no-such-observer' is not an installed observer. ...
    """
    state = _get_state()
    if name in state.observers:
        cls = state.observers[name]
        params = inspect.signature(cls).parameters
        accepted = [p for p in params if p not in ("granularity", "nonfinite", "options")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise UnsupportedOptionError(
                f"observer {name!r} does not take option(s) {', '.join(unknown)}; it takes: "
                f"{', '.join(accepted) or 'none'}."
            )
        observer = cls(granularity, nonfinite=nonfinite, **options)
        observer.distribution = state.observer_sources[name]
        return observer
    if ("observer", name) in state.ambiguous:
        sources = state.ambiguous[("observer", name)]
        raise RegistryConflictError(
            f"observer {name!r} is provided by both {' and '.join(sources)}; disable one with "
            f"{DISABLE_ENV}={sources[-1]}."
        )
    installed = ", ".join(sorted(state.observers)) or "none"
    raise UnknownObserverError(
        f"{name!r} is not an installed observer.{_missing_hint(name, state)} "
        f"Installed observers: {installed}."
    )
