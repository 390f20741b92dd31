"""What is under test: installed schemes (all, or those named) and in-process scheme objects."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mono_quant.core import Scheme

__all__ = ["LOCAL", "SelectionError", "Subject", "resolve_subjects"]

#: The distribution label of a scheme object passed in process (not installed).
LOCAL = "local"
_CORE = "mono-quant-core"


class SelectionError(ValueError):
    """A ``--scheme`` name that no installed scheme or distribution has."""


def canonical(name: str) -> str:
    """A distribution name in PEP 503 normal form.

    >>> canonical("Mono_Quant.Sym")
    'mono-quant-sym'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Subject:
    """One thing under test: a scheme of a distribution, or the distribution itself.

    A distribution subject (``scheme is None``) carries the distribution-level
    checks: that it loaded and that the dtypes it registers are valid.
    """

    distribution: str
    version: str
    scheme: Scheme | None = None
    registered: bool = False
    problems: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    entry_points: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        """``<distribution>:<scheme>``, or the distribution alone."""
        return f"{self.distribution}:{self.scheme.name}" if self.scheme is not None else self.distribution

    @property
    def name(self) -> str | None:
        """The scheme name, or ``None`` for a distribution subject."""
        return None if self.scheme is None else self.scheme.name

    def get_scheme(self) -> Scheme:
        """The scheme under test (a distribution subject has none)."""
        if self.scheme is None:
            raise TypeError(f"{self.id} is a distribution, not a scheme")
        return self.scheme

    def int_dtypes(self) -> list[str]:
        """The registered integer dtypes this scheme claims (``dtypes=None``: those it accepts).

        Float targets (casts) and float code dtypes (FP8, E2M1) are not integer dtypes.
        """
        from mono_quant.core import MonoQuantError, get_dtype, list_dtypes

        scheme = self.get_scheme()
        claimed = scheme.capabilities.dtypes
        names = list_dtypes() if claimed is None else list(claimed)
        out = []
        for n in names:
            try:
                d = get_dtype(n)
            except MonoQuantError:
                continue  # an unregistered claim fails check_scheme_declares_name_version_and_capabilities
            is_int = getattr(d, "kind", "int") == "int"
            if is_int and (claimed is not None or scheme.supports_dtype(d)):
                out.append(n)
        return out

    def float_code_dtypes(self) -> list[str]:
        """The registered float code dtypes (``kind="float_code"``: FP8, E2M1) this scheme claims."""
        from mono_quant.core import MonoQuantError, get_dtype

        out = []
        for n in self.get_scheme().capabilities.dtypes or ():
            try:
                d = get_dtype(n)
            except MonoQuantError:
                continue
            if getattr(d, "kind", "int") == "float_code":
                out.append(n)
        return out

    def packed_dtypes(self) -> list[str]:
        """The claimed integer dtypes that are stored packed."""
        from mono_quant.core import get_dtype

        return [n for n in self.int_dtypes() if get_dtype(n).packing is not None]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (the ``subjects`` entries of the summary file)."""
        out: dict[str, Any] = {
            "id": self.id,
            "distribution": self.distribution,
            "version": self.version,
            "scheme": self.name,
            "registered": self.registered,
            "problems": list(self.problems),
        }
        if self.scheme is not None:
            out["scheme_version"] = self.scheme.version
            out["profile"] = self.scheme.profile.name
            out["capabilities"] = self.scheme.capabilities.to_dict()
        else:
            out["dtypes"] = list(self.dtypes)
        return out

    def header_line(self) -> str:
        """One line for the report header: versions and the capabilities under test."""
        if self.scheme is None:
            state = "; ".join(self.problems) if self.problems else "loaded"
            registers = f", registers dtypes {', '.join(self.dtypes)}" if self.dtypes else ""
            return f"{self.distribution} {self.version}: {state}{registers}"
        s, caps = self.scheme, self.scheme.capabilities
        dtypes = (
            "every affine integer dtype ("
            + ", ".join(self.int_dtypes())
            + ", and the suite's synthetic ones)"
            if caps.dtypes is None
            else ", ".join(caps.dtypes)
        )
        profiles = (
            f"profiles {', '.join(caps.profiles)} (value checks run under each)"
            if len(caps.profiles) > 1
            else f"profile {s.profile.name}"
        )
        flags = [
            "affine" if caps.affine else "non-affine",
            "symmetric" if caps.symmetric else "asymmetric",
            "zero exact" if caps.zero_exact else "zero not exact",
            f"golden {caps.golden}" if caps.golden else "no golden",
        ]
        return (
            f"{self.id} {s.version}: dtypes {dtypes}; granularities {', '.join(caps.granularities)}; "
            f"nonfinite {'/'.join(caps.nonfinite)}; nondivisible {'/'.join(caps.nondivisible)}; "
            f"{profiles}; {', '.join(flags)}"
        )


def resolve_subjects(selection: Sequence[str | Scheme] | None = None) -> list[Subject]:
    """The subjects for ``selection``: names of installed schemes or distributions, or objects.

    Objects are :class:`~mono_quant.core.Scheme` instances tested in process;
    ``None`` selects every installed plugin. Each distribution comes first, then
    its schemes. An unknown name raises :class:`SelectionError` listing what is
    installed.

    >>> from mono_quant.conformance import resolve_subjects
    >>> [s.id for s in resolve_subjects(["symmetric"])]
    ['mono-quant-sym', 'mono-quant-sym:symmetric']
    >>> resolve_subjects(["no-such"])
    Traceback (most recent call last):
    ...
    mono_quant.conformance._selection.SelectionError: no installed scheme ... called 'no-such'. ...
    """
    from mono_quant.core import Scheme, get_scheme, list_schemes, plugin_report

    report = plugin_report()
    installed = set(list_schemes())
    records = [r for r in report.plugins if r.status != "disabled"]

    def problems_of(dist: str) -> tuple[str, ...]:
        out = []
        for r in records:
            if r.distribution == dist and r.error:
                out.append(f"entry point {r.name!r} failed to load: {r.error}")
        out += [c for c in report.conflicts if dist in c]
        return tuple(out)

    dist_subjects: dict[str, Subject] = {}
    scheme_subjects: dict[str, list[Subject]] = {}

    def add_distribution(dist: str) -> None:
        if dist in dist_subjects:
            return
        recs = [r for r in records if r.distribution == dist]
        dtypes = tuple(d for r in recs for d in r.dtypes)
        version = recs[0].version if recs else "?"
        dist_subjects[dist] = Subject(
            dist,
            version,
            None,
            registered=True,
            problems=problems_of(dist),
            dtypes=dtypes,
            entry_points=tuple(r.name for r in recs),
        )
        scheme_subjects.setdefault(dist, [])

    def add_scheme(name: str) -> None:
        scheme = get_scheme(name)
        dist = scheme.distribution
        add_distribution(dist)
        if all(s.name != name for s in scheme_subjects[dist]):
            scheme_subjects[dist].append(Subject(dist, dist_subjects[dist].version, scheme, registered=True))

    def add_local(scheme: Scheme) -> None:
        dist = scheme.distribution or LOCAL
        if dist not in dist_subjects:
            claimed = scheme.capabilities.dtypes or ()
            dist_subjects[dist] = Subject(dist, scheme.version or "?", None, dtypes=tuple(claimed))
            scheme_subjects[dist] = []
        scheme_subjects[dist].append(Subject(dist, scheme.version or "?", scheme, registered=False))

    if selection is None:
        for r in records:
            if r.distribution == _CORE and not problems_of(_CORE):
                continue
            add_distribution(r.distribution)
            for name in r.schemes:
                if name in installed:
                    add_scheme(name)
    else:
        for item in selection:
            if isinstance(item, Scheme):
                add_local(item)
                continue
            if not isinstance(item, str):
                raise SelectionError(f"select schemes by name or Scheme object, got {type(item).__name__}.")
            if item in installed:
                add_scheme(item)
                continue
            matched = [r for r in records if canonical(r.distribution) == canonical(item) or r.name == item]
            if matched:
                for r in matched:
                    add_distribution(r.distribution)
                    for name in r.schemes:
                        if name in installed:
                            add_scheme(name)
                continue
            conflicts = [c for c in report.conflicts if f"'{item}'" in c]
            if conflicts:
                raise SelectionError(f"scheme {item!r} cannot be tested: {conflicts[0]}.")
            dists = sorted({r.distribution for r in records if r.distribution != _CORE})
            raise SelectionError(
                f"no installed scheme or distribution is called {item!r}. Installed schemes: "
                f"{', '.join(sorted(installed)) or 'none'}; distributions: {', '.join(dists) or 'none'}."
            )
    out: list[Subject] = []
    for dist, subject in dist_subjects.items():
        out.append(subject)
        out.extend(scheme_subjects.get(dist, []))
    return out
