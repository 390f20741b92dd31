"""pytest plugin of mono-quant-conformance (opt-in).

Installed, it only adds options: nothing is collected, imported or changed until
``--mono-quant-conformance`` is given. Importing this module does not import
torch or mono-quant-core; they load when the suite is asked for.
"""

from __future__ import annotations

import inspect
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mono_quant.conformance._expected import ExpectedFailures, ExpectedFailuresError
from mono_quant.conformance._results import CheckResult, ConformanceError, Results, summarize
from mono_quant.conformance._runner import DEFAULT_PROFILE, PlannedCheck, Runner, plan
from mono_quant.conformance._selection import SelectionError, Subject

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr
    from _pytest.terminal import TerminalReporter

    from mono_quant.conformance._observer_suite import ObserverSubject

__all__ = [
    "ConformanceItem",
    "ConformanceSuite",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_ignore_collect",
    "pytest_report_header",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]

CHECKS_DOC = "docs/conformance/checks.md"


@dataclass
class _State:
    subjects: list[Subject]
    runner: Runner
    stale: str
    json_path: str | None
    config_source: str | None
    results: list[CheckResult] = field(default_factory=list)
    observer_subjects: list[ObserverSubject] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()


def _scheme_traceback(exc: BaseException) -> str:
    """The exception's traceback without pytest's and pluggy's own frames."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not any(part in f.filename for part in ("/_pytest/", "/pluggy/", "_pytest_support.py"))
    ]
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + (f"{type(exc).__name__}: {exc}")
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's command-line options (all inert without ``--mono-quant-conformance``)."""
    group = parser.getgroup("mono-quant-conformance", "mono-quant conformance suite")
    group.addoption(
        "--mono-quant-conformance", action="store_true", default=False, dest="mono_quant_conformance",
        help="run the mono-quant conformance suite against installed scheme plugins "
        "(alone, unless test paths are given too).",
    )  # fmt: skip
    group.addoption(
        "--scheme", "--mono-quant-scheme", action="append", default=[], dest="mono_quant_schemes",
        metavar="NAME",
        help="test only this scheme, or every scheme of this distribution (repeatable; default: all).",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-config", dest="mono_quant_config", metavar="PATH", default=None,
        help="pyproject.toml (or other .toml) holding [tool.mono-quant.conformance]; "
        "default: the rootdir's pyproject.toml if it has that table.",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-expected-failures", action="append", default=[], dest="mono_quant_expected",
        metavar="PATH", help="a file of expected failures ('<test id>  # <reason>' lines, or .toml).",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-stale", choices=("fail", "warn"), default=None, dest="mono_quant_stale",
        help="what a declared expected failure that passes does (default: fail).",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-json", dest="mono_quant_json", metavar="PATH", default=None,
        help="write a JSON summary (scheme, distribution, version, check, status, reason, seed).",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-seed", dest="mono_quant_seed", type=int, default=None, metavar="N",
        help="hypothesis seed for every check (replays a reported failure).",
    )  # fmt: skip
    group.addoption(
        "--mono-quant-max-examples", dest="mono_quant_max_examples", type=int, default=None, metavar="N",
        help="hypothesis examples per property (default: the profile's).",
    )  # fmt: skip


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("mono_quant_conformance", False))


def _profile(config: pytest.Config) -> str:
    given = config.getoption("hypothesis_profile", None)
    return str(given or os.environ.get("HYPOTHESIS_PROFILE") or DEFAULT_PROFILE)


def _check_config_argument(config: pytest.Config, explicit: str) -> None:
    """Refuse ``--mono-quant-config PATH`` as two arguments where pytest took PATH as its own config.

    pytest picks its rootdir and ini file before plugins add their options, so it
    reads a separate PATH as a test path: the plugin's pyproject.toml then
    configures pytest itself, ``addopts`` included. ``--mono-quant-config=PATH`` does not.
    """
    if explicit not in [str(a) for a in config.invocation_params.args]:
        return
    given = Path(explicit).resolve()
    here = config.invocation_params.dir.resolve()
    if config.inipath is None or config.inipath.resolve() != given or given.parent in (here, *here.parents):
        return
    raise ExpectedFailuresError(
        f"--mono-quant-config {explicit} was given as two arguments, so pytest also took {explicit} as "
        f"its own configuration file (its [tool.pytest.ini_options], addopts included). Write "
        f"--mono-quant-config={explicit}."
    )


def _expected(config: pytest.Config) -> tuple[ExpectedFailures, str | None]:
    explicit = config.getoption("mono_quant_config")
    if explicit:
        _check_config_argument(config, explicit)
        path = Path(explicit)
        if not path.is_file():
            raise ExpectedFailuresError(f"--mono-quant-config {explicit!r} does not exist.")
        found = (
            ExpectedFailures.from_pyproject(path)
            if path.suffix == ".toml"
            else ExpectedFailures.from_file(path)
        )
        source: str | None = str(path)
    else:
        path = config.rootpath / "pyproject.toml"
        found = ExpectedFailures.from_pyproject(path) if path.is_file() else ExpectedFailures()
        source = str(path) if found.entries else None
    for extra in config.getoption("mono_quant_expected"):
        found = found + ExpectedFailures.from_file(extra)
    return found, source


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the schemes, the expected failures and the hypothesis profile (if enabled)."""
    if not _enabled(config):
        return
    from hypothesis.errors import InvalidArgument

    from mono_quant.conformance._catalog import all_checks
    from mono_quant.conformance._observer_suite import observer_check_names, resolve_observer_subjects
    from mono_quant.conformance._selection import resolve_subjects

    names = list(config.getoption("mono_quant_schemes"))
    try:
        observer_subjects, scheme_names = resolve_observer_subjects(names)
        subjects = resolve_subjects(scheme_names or None) if scheme_names or not names else []
        expected, source = _expected(config)
        unknown = expected.unknown([c.name for c in all_checks()] + observer_check_names())
        if unknown:
            raise ExpectedFailuresError(
                "expected failure(s) name no known check: "
                + "; ".join(f"{e.pattern!r} ({e.source})" for e in unknown)
            )
        runner = Runner(
            profile=_profile(config),
            max_examples=config.getoption("mono_quant_max_examples"),
            seed=config.getoption("mono_quant_seed"),
            expected=expected,
        )
    except (SelectionError, ExpectedFailuresError) as exc:
        raise pytest.UsageError(f"mono-quant-conformance: {exc}") from None
    except InvalidArgument as exc:
        raise pytest.UsageError(f"mono-quant-conformance: hypothesis profile: {exc}") from None
    has_schemes = any(s.scheme is not None for s in subjects) or bool(observer_subjects)
    if not has_schemes and not any(s.problems for s in subjects):
        raise pytest.UsageError(
            "mono-quant-conformance: no scheme plugin is installed; install the plugin to test "
            "(its wheel) next to mono-quant-conformance."
        )
    stale = config.getoption("mono_quant_stale") or expected.stale
    config.stash[_STATE] = _State(
        subjects,
        runner,
        stale,
        config.getoption("mono_quant_json"),
        source,
        observer_subjects=observer_subjects,
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With the suite on and no test paths given, collect only the suite, not the folder."""
    if _enabled(config) and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


class ConformanceSuite(pytest.Collector):
    """The collector of every planned check; it has no file of its own."""

    def collect(self) -> list[pytest.Item]:
        """One :class:`ConformanceItem` per (check, subject, case)."""
        from mono_quant.conformance._catalog import all_checks
        from mono_quant.conformance._observer_suite import observer_items

        state = self.config.stash[_STATE]
        return [
            ConformanceItem.from_parent(self, name=p.id, planned=p)
            for p in plan(state.subjects, all_checks())
        ] + observer_items(self, state.observer_subjects)


class ConformanceItem(pytest.Item):
    """One check on one scheme and case, named ``check[<distribution>:<scheme>-<case>]``."""

    def __init__(self, *, planned: PlannedCheck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned
        self.result: CheckResult | None = None
        self.keywords["mono_quant_conformance"] = True

    def runtest(self) -> None:
        """Run the check; pass, fail, skip or xfail as its result says."""
        from mono_quant.conformance._pytest_support import raise_outcome

        state = self.config.stash[_STATE]
        result = state.runner.execute(self.planned)
        state.results.append(result)
        self.result = result
        raise_outcome(result, stale=state.stale)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        """The check's own message (scheme, dtype, granularity, input, seed) and where to read more."""
        from mono_quant.conformance._pytest_support import StaleExpectedFailure

        check = self.planned.check
        footer = f"\n  checks: {check.summary}\n  how to fix: see '{check.name}' in {CHECKS_DOC}"
        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value) + footer
        if isinstance(excinfo.value, StaleExpectedFailure):
            return str(excinfo.value)
        if self.result is not None and self.result.exception is excinfo.value:
            return f"{self.result.message}\n{_scheme_traceback(excinfo.value)}{footer}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the check is defined, for reports that name a file."""
        func = self.planned.check.func
        try:
            path = Path(inspect.getsourcefile(func) or self.path)
            line = inspect.getsourcelines(func)[1]
        except (OSError, TypeError):
            return self.path, None, self.name
        return path, line, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Put the suite's items first, before ``-k``/``-m`` selection sees them."""
    if not _enabled(config):
        return
    suite = ConformanceSuite.from_parent(
        session, name="mono-quant-conformance", nodeid="mono-quant-conformance"
    )
    items[:0] = list(session.genitems(suite))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Versions of the suite, core, torch and hypothesis, and the capabilities under test."""
    if not _enabled(config):
        return None
    state = config.stash[_STATE]
    env = state.runner.environment()
    lines = [
        f"mono-quant-conformance {env['mono-quant-conformance']}, mono-quant-core {env['mono-quant-core']}, "
        f"torch {env['torch']}, hypothesis {env['hypothesis']} (profile {env['hypothesis_profile']}: "
        f"{env['max_examples']} examples, {'derandomized' if env['derandomize'] else 'random'}"
        + (f", seed {env['seed']}" if env["seed"] is not None else "")
        + f"; {env['max_examples_extra']} under extra profiles and on synthetic dtypes)",
        "under test:",
    ]
    lines += [f"  {s.header_line()}" for s in state.subjects]
    lines += [f"  {s.header_line()}" for s in state.observer_subjects]
    if state.config_source:
        lines.append(f"expected failures from {state.config_source} (stale: {state.stale})")
    return lines


def pytest_terminal_summary(
    terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """A short per-subject summary, the stale expected failures and the JSON path."""
    if not _enabled(config) or _STATE not in config.stash:
        return
    state = config.stash[_STATE]
    if not state.results:
        return
    terminalreporter.section("mono-quant conformance")
    for subject in state.subjects:
        mine = [
            r for r in state.results if (r.distribution, r.scheme) == (subject.distribution, subject.name)
        ]
        if mine:
            terminalreporter.write_line(f"{subject.id}: {summarize(mine)}")
    for observer in state.observer_subjects:
        mine = [
            r for r in state.results if (r.distribution, r.scheme) == (observer.distribution, observer.name)
        ]
        if mine:
            terminalreporter.write_line(f"{observer.id}: {summarize(mine)}")
    for r in state.results:
        if r.status == "stale":
            terminalreporter.write_line(f"STALE {r.reason}", yellow=True)
    if state.json_path:
        terminalreporter.write_line(f"JSON summary: {state.json_path}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the JSON summary when ``--mono-quant-json`` asks for it."""
    config = session.config
    if not _enabled(config) or _STATE not in config.stash:
        return
    state = config.stash[_STATE]
    if state.json_path:
        Results(
            list(state.results),
            subjects=[s.describe() for s in state.subjects] + [s.describe() for s in state.observer_subjects],
            environment=state.runner.environment(),
        ).write_json(state.json_path)
