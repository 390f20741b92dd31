"""Expected failures, declared by the caller with a reason each, and matched to test ids."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest depends on tomli below 3.11
    import tomli as tomllib

__all__ = ["ExpectedFailure", "ExpectedFailures", "ExpectedFailuresError", "StaleMode"]

TABLE = "[tool.mono-quant.conformance]"
_KEYS = ("expected-failures", "expected-failures-files", "stale")
StaleMode = str  # "fail" or "warn"


class ExpectedFailuresError(ValueError):
    """A malformed expected-failure declaration (missing reason, unknown key, bad file)."""


@dataclass(frozen=True)
class ExpectedFailure:
    """One declared expected failure: which test ids it covers, why, and where it was declared.

    ``pattern`` is a test id (``check[<distribution>:<scheme>-<case>]``), a prefix of
    one cut at a ``-`` (``check[<distribution>:<scheme>]``, the distribution may be
    left out), a bare check name (every scheme and case), or any of these with
    ``*`` wildcards.

    >>> e = ExpectedFailure("check_x[nf4]", "codebook", "here")
    >>> e.matches("check_x[mono-quant-nf4:nf4-nf4-per_group]"), e.matches("check_y[d:nf4-int8]")
    (True, False)
    """

    pattern: str
    reason: str
    source: str

    @property
    def check(self) -> str:
        """The check name the pattern starts with (may hold wildcards)."""
        return self.pattern.split("[", 1)[0]

    def matches(self, test_id: str) -> bool:
        """Whether this entry covers ``test_id``."""
        if "*" in self.pattern or "?" in self.pattern:
            regex = re.escape(self.pattern).replace(r"\*", ".*").replace(r"\?", ".")
            return re.fullmatch(regex, test_id) is not None
        check, _, rest = test_id.partition("[")
        params = rest[:-1] if rest.endswith("]") else rest
        want_check, _, want_rest = self.pattern.partition("[")
        if want_check != check:
            return False
        if not want_rest:
            return True
        selector = want_rest[:-1] if want_rest.endswith("]") else want_rest
        candidates = [params]
        if ":" in params:
            candidates.append(params.split(":", 1)[1])
        return any(c == selector or c.startswith(selector + "-") for c in candidates)


@dataclass(frozen=True)
class ExpectedFailures:
    """The caller's declared expected failures, and what to do with a stale one.

    Build it from a mapping (id -> reason), a file (:meth:`from_file`) or a
    ``pyproject.toml`` table (:meth:`from_pyproject`); ``+`` merges two.

    >>> from mono_quant.conformance import ExpectedFailures
    >>> xf = ExpectedFailures.from_mapping({"check_x[nf4]": "codebook"}, source="doc")
    >>> xf.match("check_x[d:nf4-int8]").reason
    'codebook'
    >>> ExpectedFailures.from_mapping({"check_x": ""}, source="doc")
    Traceback (most recent call last):
    ...
    mono_quant.conformance._expected.ExpectedFailuresError: doc: expected failure 'check_x' has no reason; ...
    """

    entries: tuple[ExpectedFailure, ...] = ()
    stale: StaleMode = "fail"

    def __add__(self, other: ExpectedFailures) -> ExpectedFailures:
        stale = "warn" if "warn" in (self.stale, other.stale) else "fail"
        return ExpectedFailures(self.entries + other.entries, stale)

    def match(self, test_id: str) -> ExpectedFailure | None:
        """The first entry that covers ``test_id``, or ``None``."""
        for entry in self.entries:
            if entry.matches(test_id):
                return entry
        return None

    def unknown(self, known_checks: Iterable[str]) -> list[ExpectedFailure]:
        """Entries whose check name is not a known check (a typo or a renamed check)."""
        known = set(known_checks)
        out = []
        for e in self.entries:
            if "*" in e.check or "?" in e.check:
                regex = re.escape(e.check).replace(r"\*", ".*").replace(r"\?", ".")
                if not any(re.fullmatch(regex, k) for k in known):
                    out.append(e)
            elif e.check not in known:
                out.append(e)
        return out

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str) -> ExpectedFailures:
        """Entries from ``{test id pattern: reason}``; every reason must be a non-empty string."""
        entries = []
        for pattern, reason in mapping.items():
            if not isinstance(reason, str) or not reason.strip():
                raise ExpectedFailuresError(
                    f"{source}: expected failure {pattern!r} has no reason; write why it fails "
                    f"(and where it is tracked) as its value."
                )
            entries.append(ExpectedFailure(str(pattern).strip(), reason.strip(), source))
        return cls(tuple(entries))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ExpectedFailures:
        """Entries from a ``.toml`` file or a text file of ``<test id>  # <reason>`` lines.

        A ``.toml`` file holds the same table as ``pyproject.toml``, or a bare
        ``[expected-failures]`` table.
        """
        p = Path(path)
        if not p.is_file():
            raise ExpectedFailuresError(f"expected-failures file {str(p)!r} does not exist.")
        if p.suffix == ".toml":
            data = _read_toml(p)
            table = data.get("tool", {}).get("mono-quant", {}).get("conformance")
            if table is None:
                table = data
            return cls._from_table(table, p, f"{p}")
        entries = []
        for number, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pattern, sep, reason = line.partition("#")
            if not sep or not reason.strip():
                raise ExpectedFailuresError(
                    f"{p}:{number}: expected failure {pattern.strip()!r} has no reason; write it "
                    f"as '<test id>  # <why it fails>'."
                )
            entries.append(ExpectedFailure(pattern.strip(), reason.strip(), f"{p}:{number}"))
        return cls(tuple(entries))

    @classmethod
    def from_pyproject(cls, path: str | os.PathLike[str]) -> ExpectedFailures:
        """Entries from the ``[tool.mono-quant.conformance]`` table of a ``pyproject.toml``.

        None if the table is absent; ``expected-failures-files`` are read relative to it.
        """
        p = Path(path)
        table = _read_toml(p).get("tool", {}).get("mono-quant", {}).get("conformance")
        if table is None:
            return cls()
        return cls._from_table(table, p, f"{p} {TABLE}")

    @classmethod
    def _from_table(cls, table: Any, path: Path, source: str) -> ExpectedFailures:
        if not isinstance(table, dict):
            raise ExpectedFailuresError(f"{source} must be a table.")
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ExpectedFailuresError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_KEYS)}."
            )
        mapping = table.get("expected-failures", {})
        if not isinstance(mapping, dict):
            raise ExpectedFailuresError(
                f'{source}: \'expected-failures\' must be a table of "<test id>" = "<reason>".'
            )
        result = cls.from_mapping(mapping, source=source)
        files = table.get("expected-failures-files", [])
        if isinstance(files, str):
            files = [files]
        for name in files:
            result = result + cls.from_file(path.parent / str(name))
        stale = table.get("stale", "fail")
        if stale not in ("fail", "warn"):
            raise ExpectedFailuresError(f'{source}: \'stale\' must be "fail" or "warn", got {stale!r}.')
        return ExpectedFailures(result.entries, stale)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ExpectedFailuresError(f"{str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExpectedFailuresError(f"{path} is not valid TOML: {exc}.") from None
