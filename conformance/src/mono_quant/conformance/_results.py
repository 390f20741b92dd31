"""Outcomes: the failure a check raises, and the result of one check on one scheme and case."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckResult", "CheckSkipped", "ConformanceError", "Results", "Status"]

#: ``xfail``: a declared expected failure that failed; ``stale``: one that passed.
Status = Literal["passed", "failed", "skipped", "xfail", "stale"]

JSON_FORMAT_VERSION = 1


class ConformanceError(AssertionError):
    """A scheme broke a property a check asserts.

    ``detail`` says what was expected and what was found; ``dtype``,
    ``granularity`` and ``input`` (the failing input, or how to rebuild it) are
    printed under it. The runner adds the scheme, the check and the hypothesis seed.

    >>> print(ConformanceError("scale is 0.0, expected > 0", dtype="int8", input="torch.zeros(3)"))
    scale is 0.0, expected > 0
      dtype: int8
      input: torch.zeros(3)
    """

    def __init__(
        self,
        detail: str,
        *,
        dtype: str | None = None,
        granularity: object = None,
        input: object = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.dtype = dtype
        self.granularity = granularity
        self.input = input
        #: Set by the runner: ``[<distribution>:<scheme>] <check> (<case>)``.
        self.context = ""
        #: Set by the runner when the check drew inputs with hypothesis.
        self.seed: int | None = None

    def __str__(self) -> str:
        lines = [f"{self.context}: {self.detail}" if self.context else self.detail]
        if self.dtype is not None:
            lines.append(f"  dtype: {self.dtype}")
        if self.granularity is not None:
            lines.append(f"  granularity: {_granularity_text(self.granularity)}")
        if self.input is not None:
            lines.append(f"  input: {self.input}")
        if self.seed is not None:
            lines.append(
                f"  hypothesis seed: {self.seed} (rerun with --mono-quant-seed {self.seed}, "
                f"or run(..., seed={self.seed}))"
            )
        return "\n".join(lines)


class CheckSkipped(Exception):
    """A check does not apply to this scheme or case; the message says why."""


def _granularity_text(g: object) -> str:
    name = type(g).__name__
    if name == "PerTensor":
        return "PerTensor()"
    if name == "PerChannel":
        return f"PerChannel(axis={getattr(g, 'axis', '?')})"
    if name == "PerGroup":
        return f"PerGroup(axis={getattr(g, 'axis', '?')}, group_size={getattr(g, 'group_size', '?')})"
    return repr(g)


@dataclass
class CheckResult:
    """The outcome of one check on one scheme (or distribution) and one case.

    ``id`` is the pytest test id, ``check[<distribution>:<scheme>-<case>]``, which is
    also what an expected-failure entry names. ``reason`` is one line;
    ``message`` the full failure text (empty unless the check failed).

    >>> r = CheckResult("check_x[d:s-int8]", "check_x", "d", "1.0", "s", "int8", "passed")
    >>> r.ok, r.to_dict()["status"]
    (True, 'passed')
    """

    id: str
    check: str
    distribution: str
    version: str
    scheme: str | None
    case: str
    status: Status
    reason: str = ""
    message: str = ""
    seed: int | None = None
    duration_s: float = 0.0
    expected_reason: str | None = None
    #: The exception the check raised (not serialized), so pytest can show its traceback.
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True unless the check failed or a declared expected failure went stale."""
        return self.status not in ("failed", "stale")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (one entry of the summary file's ``results``)."""
        return {
            "id": self.id,
            "check": self.check,
            "scheme": self.scheme,
            "distribution": self.distribution,
            "version": self.version,
            "case": self.case,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "expected_reason": self.expected_reason,
            "hypothesis_seed": self.seed,
            "duration_s": round(self.duration_s, 4),
        }


@dataclass
class Results:
    """Every :class:`CheckResult` of a run, with what was tested.

    ``subjects`` describes each scheme (name, distribution, versions, capabilities)
    and ``environment`` the suite, core, torch and hypothesis settings.

    >>> res = Results([CheckResult("c[d]", "c", "d", "1", None, "", "failed", "boom")])
    >>> res.ok, res.counts()["failed"], [r.id for r in res.failed]
    (False, 1, ['c[d]'])
    """

    results: list[CheckResult] = field(default_factory=list)
    subjects: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def ok(self) -> bool:
        """True when no check failed and no expected failure is stale."""
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        """The results with status ``failed``."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def stale(self) -> list[CheckResult]:
        """Declared expected failures that passed: remove them from the declaration."""
        return [r for r in self.results if r.status == "stale"]

    def by_check(self, check: str) -> list[CheckResult]:
        """The results of the check called ``check``."""
        return [r for r in self.results if r.check == check]

    def counts(self) -> dict[str, int]:
        """How many results have each status (every status present, 0 if none)."""
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in ("passed", "failed", "skipped", "xfail", "stale")}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: format version, environment, subjects, results and counts."""
        return {
            "format_version": JSON_FORMAT_VERSION,
            "environment": self.environment,
            "subjects": self.subjects,
            "summary": self.counts(),
            "results": [r.to_dict() for r in self.results],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` (parent folders are created)."""
        target = os.fspath(path)
        parent = os.path.dirname(target)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=False)
            fh.write("\n")


def summarize(results: Sequence[CheckResult]) -> str:
    """``3 passed, 1 failed`` style one-liner over ``results``.

    >>> summarize([CheckResult("c[d]", "c", "d", "1", None, "", "passed")])
    '1 passed'
    """
    counts = Results(list(results)).counts()
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return ", ".join(parts) or "no checks"
