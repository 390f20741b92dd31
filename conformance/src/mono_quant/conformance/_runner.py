"""Plan and run checks: one function both the pytest plugin and :func:`run` go through."""

from __future__ import annotations

import os
import random
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mono_quant.conformance._catalog import Case, Check, all_checks
from mono_quant.conformance._expected import ExpectedFailures
from mono_quant.conformance._results import CheckResult, CheckSkipped, ConformanceError, Results, Status
from mono_quant.conformance._selection import Subject, resolve_subjects
from mono_quant.conformance._variants import (
    SYNTHETIC_PREFIX,
    extra_profiles,
    synthetic_dtypes,
    synthetic_dtypes_registered,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from mono_quant.core import Scheme

__all__ = ["DEFAULT_PROFILE", "CheckContext", "PlannedCheck", "Runner", "run"]

T = TypeVar("T")

#: The hypothesis profile the suite uses unless told otherwise (registered by
#: :mod:`mono_quant.conformance.strategies`): derandomized, 25 examples.
DEFAULT_PROFILE = "mono-quant-ci"

#: Under a scheme's extra profiles and on synthetic dtypes a property draws this many
#: times fewer examples.
EXTRA_DIVISOR = 5


class CheckContext:
    """What a check needs besides the scheme: how to draw hypothesis examples.

    :meth:`for_each` runs a property over explicit examples and then over
    ``max_examples`` drawn ones, seeded with :attr:`seed` so a failure can be
    replayed; the runner records whether a seed was used.
    """

    def __init__(self, *, max_examples: int, seed: int) -> None:
        self.max_examples = max_examples
        self.seed = seed
        self.used_hypothesis = False
        self._calls = 0
        self.noted: dict[str, object] = {}

    def note(self, *, dtype: str | None = None, granularity: object = None, input: object = None) -> None:
        """Record what a check is working on, so an unexpected error can name it."""
        self.noted = {"dtype": dtype, "granularity": granularity, "input": input}

    def for_each(
        self,
        strategy: SearchStrategy[T],
        prop: Callable[[T], None],
        *,
        explicit: Sequence[T] = (),
        max_examples: int | None = None,
    ) -> None:
        """Run ``prop`` on every ``explicit`` example, then on drawn ones.

        A :class:`ConformanceError` raised by ``prop`` gets the failing example
        attached as its input; any other exception is turned into one.
        """
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis.errors import HypothesisException

        self.used_hypothesis = True
        self._calls += 1
        n = self.max_examples if max_examples is None else min(max_examples, self.max_examples)

        def wrapped(value: T) -> None:
            try:
                prop(value)
            except ConformanceError as exc:
                if exc.input is None:
                    exc.input = value
                raise
            except (HypothesisException, CheckSkipped):
                raise
            except Exception as exc:
                raise ConformanceError(f"raised {type(exc).__name__}: {exc}", input=value) from exc

        # The fixed examples run first, directly: they need none of hypothesis' machinery.
        for value in explicit:
            wrapped(value)
        if n <= 0:
            return
        test: Any = given(strategy)(wrapped)
        test = settings(
            max_examples=n,
            database=None,
            deadline=None,
            derandomize=False,
            print_blob=False,
            verbosity=Verbosity.quiet,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )(test)
        test = hypothesis_seed(self.seed + self._calls - 1)(test)
        test()


@dataclass(frozen=True)
class PlannedCheck:
    """One check on one subject and case: a row of the suite, a pytest item."""

    check: Check
    subject: Subject
    case: Case

    @property
    def params(self) -> str:
        """The bracketed part of the test id: ``<distribution>:<scheme>-<case>``."""
        return "-".join(p for p in (self.subject.id, self.case.label) if p)

    @property
    def id(self) -> str:
        """The test id: ``check[<distribution>:<scheme>-<case>]``."""
        return f"{self.check.name}[{self.params}]"


def cases_for(check: Check, subject: Subject) -> list[Case]:
    """The cases ``check`` runs for ``subject`` (none if it is for the other kind of subject)."""
    if check.over == "distribution":
        return [Case()] if subject.scheme is None else []
    if subject.scheme is None:
        return []
    if check.over == "scheme":
        return [Case()]
    if check.over == "float_target":
        return [Case("float16"), Case("bfloat16")]
    if check.over == "packed_dtype":
        return [Case(d) for d in subject.packed_dtypes()] or [Case()]
    if check.over in ("float_code", "float_code_granularity_profile"):
        floats = subject.float_code_dtypes()
        if check.over == "float_code":
            return [Case(d) for d in floats] or [Case()]
        extra: list[str | None] = [None, *extra_profiles(subject.scheme)]
        kinds = subject.scheme.capabilities.granularities
        return [Case(d, k, p) for d in floats for k in kinds for p in extra] or [Case()]
    dtypes = subject.int_dtypes()
    if check.over == "dtype":
        return [Case(d) for d in dtypes] or [Case()]
    kinds = subject.scheme.capabilities.granularities
    profiles: list[str | None] = [None]
    if check.over == "dtype_granularity_profile":
        profiles += extra_profiles(subject.scheme)
    return [Case(d, k, p) for d in dtypes for k in kinds for p in profiles] or [Case()]


def plan(subjects: Sequence[Subject], checks: Iterable[Check]) -> list[PlannedCheck]:
    """Every (check, subject, case), grouped by subject, checks in catalog order.

    The suite's synthetic dtypes are registered while planning, so a scheme that
    claims every affine integer dtype gets cases for them too.
    """
    checks = list(checks)
    with synthetic_dtypes_registered():
        return [
            PlannedCheck(check, subject, case)
            for subject in subjects
            for check in checks
            for case in cases_for(check, subject)
        ]


class Runner:
    """Runs planned checks under one hypothesis profile and one set of expected failures."""

    def __init__(
        self,
        *,
        profile: str = DEFAULT_PROFILE,
        max_examples: int | None = None,
        seed: int | None = None,
        expected: ExpectedFailures | None = None,
    ) -> None:
        from hypothesis import settings

        from mono_quant.conformance import strategies  # noqa: F401 - registers the profiles

        chosen = settings.get_profile(profile)
        self.profile = profile
        self.max_examples = int(chosen.max_examples if max_examples is None else max_examples)
        self.derandomize = bool(chosen.derandomize)
        self.fixed_seed = seed
        self.expected = expected or ExpectedFailures()

    def seed_for(self, planned: PlannedCheck) -> int:
        """The hypothesis seed of ``planned``: fixed, derived from the check and case, or random.

        Derandomized, the seed comes from the check's name and the case (dtype,
        granularity, profile), never from the scheme's or distribution's name: a
        renamed plugin is shown the same inputs.
        """
        if self.fixed_seed is not None:
            return self.fixed_seed
        if self.derandomize:
            return zlib.crc32(f"{planned.check.name}[{planned.case.label}]".encode())
        return random.SystemRandom().getrandbits(32)

    def examples_for(self, planned: PlannedCheck) -> int:
        """Drawn examples per property: the profile's; a fifth of them on what the suite adds.

        The suite adds the scheme's extra profiles and its own synthetic dtypes. The
        fixed inputs (edge cases, ties built for the dtype) run in full on them; the
        drawn ones are fewer, since the math differs there only in its conventions
        (eps, compute dtype, zero-point rule) or its range.
        """
        case = planned.case
        synthetic = case.dtype is not None and case.dtype.startswith(SYNTHETIC_PREFIX)
        if case.profile is None and not synthetic:
            return self.max_examples
        return -(-self.max_examples // EXTRA_DIVISOR)

    def execute(self, planned: PlannedCheck) -> CheckResult:
        """Run one planned check and classify its outcome (expected failures applied)."""
        ctx = CheckContext(max_examples=self.examples_for(planned), seed=self.seed_for(planned))
        subject = planned.subject
        context = f"[{subject.id}] {planned.check.name}" + (
            f" ({planned.case.label})" if planned.case.label else ""
        )
        start = time.perf_counter()
        status: Status
        exception: BaseException | None = None
        reason = message = ""
        try:
            with synthetic_dtypes_registered():
                planned.check.func(subject, planned.case, ctx)
            status = "passed"
        except CheckSkipped as exc:
            status, reason = "skipped", str(exc)
        except ConformanceError as exc:
            exc.context = context
            if ctx.used_hypothesis:
                exc.seed = ctx.seed
            status, exception = "failed", exc
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises is that check's failure
            wrapped = ConformanceError(f"raised {type(exc).__name__}: {exc}", **ctx.noted)  # type: ignore[arg-type]
            wrapped.context = context
            wrapped.__cause__ = exc
            status, exception = "failed", exc
            message = str(wrapped)
        duration = time.perf_counter() - start
        if exception is not None:
            message = message or str(exception)
            reason = message.splitlines()[0]
        entry = self.expected.match(planned.id)
        expected_reason = None
        if entry is not None and status in ("failed", "passed"):
            expected_reason = entry.reason
            if status == "failed":
                status = "xfail"
                reason = f"expected failure ({entry.source}): {entry.reason}"
            else:
                status = "stale"
                reason = (
                    f"stale expected failure: {planned.id} passed, but {entry.source} declares "
                    f"{entry.pattern!r} as failing ({entry.reason}); remove the entry."
                )
        return CheckResult(
            id=planned.id,
            check=planned.check.name,
            distribution=subject.distribution,
            version=subject.version,
            scheme=subject.name,
            case=planned.case.label,
            status=status,
            reason=reason,
            message=message,
            seed=ctx.seed if ctx.used_hypothesis else None,
            duration_s=duration,
            expected_reason=expected_reason,
            exception=exception,
        )

    def environment(self) -> dict[str, Any]:
        """Versions and settings, for the report header and the JSON summary."""
        import importlib.metadata as md

        import hypothesis
        import torch

        def version(dist: str) -> str:
            try:
                return md.version(dist)
            except md.PackageNotFoundError:
                return "0+unknown"

        return {
            "mono-quant-conformance": version("mono-quant-conformance"),
            "mono-quant-core": version("mono-quant-core"),
            "torch": torch.__version__,
            "hypothesis": hypothesis.__version__,
            "python": sys.version.split()[0],
            "hypothesis_profile": self.profile,
            "max_examples": self.max_examples,
            "max_examples_extra": -(-self.max_examples // EXTRA_DIVISOR),
            "synthetic_dtypes": [d.name for d in synthetic_dtypes()],
            "derandomize": self.derandomize,
            "seed": self.fixed_seed,
            "platform": sys.platform,
            "cuda": bool(torch.cuda.is_available()),
            "cwd": os.getcwd(),
        }


def select_checks(names: Iterable[str] | None) -> list[Check]:
    """The catalog, or the checks named (an unknown name raises ``ValueError``)."""
    catalog = all_checks()
    if names is None:
        return catalog
    by_name = {c.name: c for c in catalog}
    wanted = list(names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(by_name)}.")
    return [by_name[n] for n in wanted]


def run(
    schemes: Sequence[str | Scheme] | None = None,
    *,
    checks: Iterable[str] | None = None,
    expected_failures: ExpectedFailures | Mapping[str, str] | str | os.PathLike[str] | None = None,
    profile: str = DEFAULT_PROFILE,
    max_examples: int | None = None,
    seed: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
) -> Results:
    """Run the conformance suite in process and return every result.

    ``schemes`` are installed scheme or distribution names, or
    :class:`~mono_quant.core.Scheme` objects (not installed: handy for a scheme
    under development); ``None`` tests every installed plugin. ``checks`` limits
    the run to the named checks. ``expected_failures`` is a mapping of test id
    pattern to reason, a file, or an :class:`ExpectedFailures`. ``json_path``
    also writes the JSON summary.

    >>> res = run(["symmetric"], checks=["check_zero_range_gives_finite_scale"])
    >>> res.ok, res.counts()["failed"], res.results[0].id
    (True, 0, 'check_zero_range_gives_finite_scale[mono-quant-sym:symmetric-int16-per_tensor]')
    """
    if expected_failures is None:
        expected = ExpectedFailures()
    elif isinstance(expected_failures, ExpectedFailures):
        expected = expected_failures
    elif isinstance(expected_failures, Mapping):
        expected = ExpectedFailures.from_mapping(expected_failures, source="run(expected_failures=...)")
    else:
        expected = ExpectedFailures.from_file(expected_failures)
    chosen = select_checks(checks)
    unknown = expected.unknown(c.name for c in all_checks())
    if unknown:
        raise ValueError(
            "expected failure(s) name no known check: "
            + "; ".join(f"{e.pattern!r} ({e.source})" for e in unknown)
        )
    subjects = resolve_subjects(schemes)
    runner = Runner(profile=profile, max_examples=max_examples, seed=seed, expected=expected)
    results = Results(
        [runner.execute(p) for p in plan(subjects, chosen)],
        subjects=[s.describe() for s in subjects],
        environment=runner.environment(),
    )
    if json_path is not None:
        results.write_json(json_path)
    return results
