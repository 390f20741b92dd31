"""The plugin-CI nox helper, driven with a recording stand-in for nox.Session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mono_quant.conformance import nox as helper


class RecordingSession:
    """Records install/run/chdir; 'builds' a wheel when asked to run python -m build."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []
        self.posargs: list[str] = ["-x"]

    def install(self, *args: str) -> None:
        self.calls.append(("install", args, {}))

    def run(self, *args: str, **kwargs: Any) -> None:
        self.calls.append(("run", args, kwargs))
        if args[:3] == ("python", "-m", "build"):
            out = Path(args[args.index("--outdir") + 1])
            out.mkdir(parents=True)
            (out / "mono_quant_demo-0.1.0-py3-none-any.whl").write_bytes(b"")

    def chdir(self, path: str) -> None:
        self.calls.append(("chdir", (path,), {}))

    def error(self, message: str) -> None:
        raise RuntimeError(message)


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    root = tmp_path / "mono-quant-demo"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling>=1.21"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "mono-quant-demo"\nversion = "0.1.0"\n'
    )
    return root


def test_the_helper_builds_installs_a_pinned_suite_and_runs_it_outside_the_tree(plugin: Path) -> None:
    session = RecordingSession()
    work = helper.conformance_session(
        session,
        plugin=plugin,
        conformance="mono-quant-conformance==0.1.0",
        install=("-c", "c.txt"),  # type: ignore[arg-type]
    )
    kinds = [c[0] for c in session.calls]
    assert kinds == ["install", "run", "install", "chdir", "run"]
    assert session.calls[0][1] == ("-c", "c.txt", "build", "hatchling>=1.21")
    build = session.calls[1][1]
    assert "--no-isolation" in build and str(plugin) in build
    installed = session.calls[2][1]
    assert installed[:2] == ("-c", "c.txt") and installed[-1] == "mono-quant-conformance==0.1.0"
    assert installed[2].endswith(".whl")
    run_dir = Path(session.calls[3][1][0])
    assert run_dir.parent == work and not str(run_dir).startswith(str(plugin))
    args, kwargs = session.calls[4][1], session.calls[4][2]
    assert args[:6] == ("python", "-m", "pytest", "-p", "no:cacheprovider", "--mono-quant-conformance")
    assert args[6] == "--scheme=mono-quant-demo"
    assert f"--mono-quant-config={plugin / 'pyproject.toml'}" in args
    assert str(plugin / "pyproject.toml") not in args  # never a separate argument pytest reads as a path
    assert args[-1] == "-x"  # session.posargs reach pytest
    assert kwargs["env"]["HYPOTHESIS_PROFILE"] == os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci")


def test_the_default_pin_is_the_installed_suite_version() -> None:
    import mono_quant.conformance

    assert helper.pinned_conformance() == f"mono-quant-conformance=={mono_quant.conformance.__version__}"


def test_copy_outside_leaves_caches_and_builds_behind(plugin: Path) -> None:
    for junk in (".hypothesis", "build", "dist", ".nox"):
        (plugin / junk).mkdir()
    (plugin / "src").mkdir()
    copy = helper.copy_outside(plugin)
    assert copy.name == plugin.name and copy.parent != plugin.parent
    assert sorted(p.name for p in copy.iterdir()) == ["pyproject.toml", "src"]


HOSTILE = """
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "mono-quant-demo"
version = "0.1.0"

[tool.pytest.ini_options]
addopts = "-n auto --cov=mono_quant.demo -p no:mono_quant_conformance"

[tool.mono-quant.conformance.expected-failures]
"check_zero_range_gives_finite_scale[symmetric-int8-per_tensor]" = "pretend it fails"
"""


def _pytest(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "HYPOTHESIS_PROFILE")}
    return subprocess.run(
        [sys.executable, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=900, env=env
    )


def test_the_helper_s_pytest_call_ignores_a_plugin_s_hostile_pytest_configuration(tmp_path: Path) -> None:
    plugin = tmp_path / "mono-quant-demo"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(HOSTILE)
    session = RecordingSession()
    session.posargs = ["-k", "zero_range and int8-per_tensor"]
    helper.conformance_session(session, plugin=plugin, schemes=["symmetric"], conformance="unused")
    (run_dir,) = [c[1][0] for c in session.calls if c[0] == "chdir"]
    done = _pytest(list(session.calls[-1][1]), Path(run_dir))
    # The expected failure is read from the plugin's pyproject (the zero-range check passes,
    # so it is stale); its addopts (xdist, coverage, disabling the suite) never reach pytest.
    assert "stale expected failure" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert "inifile: " not in done.stdout and "unrecognized arguments" not in done.stderr


def test_the_path_as_a_separate_argument_is_refused_with_the_fix(tmp_path: Path) -> None:
    plugin = tmp_path / "mono-quant-demo"
    plugin.mkdir()
    # --collect-only would make the suite "pass" without running a single check.
    hostile = HOSTILE.replace("-n auto --cov=mono_quant.demo -p no:mono_quant_conformance", "--collect-only")
    (plugin / "pyproject.toml").write_text(hostile)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = str(plugin / "pyproject.toml")
    args = [
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--mono-quant-conformance",
        "--scheme=symmetric",
    ]
    done = _pytest([*args, "--mono-quant-config", config], run_dir)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-3000:]
    assert f"Write --mono-quant-config={config}." in done.stderr
