"""The plugin-CI nox helper, driven with a recording stand-in for nox.Session."""

from __future__ import annotations

import os
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
    assert args[6:8] == ("--scheme", "mono-quant-demo")
    assert args[args.index("--mono-quant-config") + 1] == str(plugin / "pyproject.toml")
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
