"""mono-quant-fp6's own checks: its tests and the mono-quant conformance suite, on the built wheel.

``nox`` runs both. Each session builds this package's wheel, installs it into a
fresh virtualenv and runs from outside the source tree, so what is tested is
what ``pip install mono-quant-fp6`` gives users. pip reads ``PIP_FIND_LINKS``,
``PIP_INDEX_URL`` and ``PIP_CONSTRAINT`` from the environment in every session:
use them to install mono-quant from local wheels or torch from its CPU index.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

#: The suite this plugin was last checked against. A new suite version may add
#: checks, so bump this on purpose and read its changelog when you do.
CONFORMANCE = "mono-quant-conformance==0.1.*"

#: Derandomized hypothesis in CI, so a run fails or passes the same way twice.
HYPOTHESIS = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci")}


def build_wheel(session: nox.Session) -> str:
    """Build this package's wheel into the session's temporary folder; return its path."""
    session.install("build", "hatchling")
    out = Path(session.create_tmp()) / "wheel"
    session.run(
        "python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT), silent=True
    )
    (wheel,) = out.glob("mono_quant_fp6-*.whl")
    return str(wheel)


def assert_installed_from_wheel(session: nox.Session) -> None:
    """Fail if ``mono_quant.fp6`` would be imported from the source tree instead of the wheel."""
    session.run(
        "python", "-c",
        "import mono_quant.fp6 as m, sys; "
        "sys.exit(0 if 'site-packages' in m.__file__ else f'imported from {m.__file__}, not the wheel')",
    )  # fmt: skip


@nox.session
def tests(session: nox.Session) -> None:
    """This package's own tests and doctests, against its installed wheel."""
    wheel = build_wheel(session)
    session.install(wheel, CONFORMANCE, *nox.project.dependency_groups(PYPROJECT, "test"))
    assert_installed_from_wheel(session)
    session.run(
        "python", "-m", "pytest", str(ROOT / "tests"), "--pyargs", "mono_quant.fp6",
        "-c", str(ROOT / "pyproject.toml"), *session.posargs, env=HYPOTHESIS,
    )  # fmt: skip


@nox.session
def conformance(session: nox.Session) -> None:
    """The mono-quant conformance suite against the ``fp6`` scheme of the installed wheel."""
    wheel = build_wheel(session)
    session.install(wheel, CONFORMANCE)
    assert_installed_from_wheel(session)
    # Run from an empty folder outside the source tree: only the installed wheel and
    # the suite are in play, and the suite reads this project's expected failures.
    with tempfile.TemporaryDirectory() as empty, session.chdir(empty):
        session.run(
            "python", "-m", "pytest", "--mono-quant-conformance", "--scheme", "fp6",
            f"--mono-quant-config={ROOT / 'pyproject.toml'}", *session.posargs, env=HYPOTHESIS,
        )  # fmt: skip
