"""A nox session helper: build a plugin's wheel, install it with a pinned suite, run the suite.

It imports nothing but the standard library (nox only for type checking), so a
noxfile can use it from a nox that has ``mono-quant-conformance`` installed
without its dependencies (``pip install --no-deps``), or load it by path.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest depends on tomli below 3.11
    import tomli as tomllib

if TYPE_CHECKING:
    import nox

__all__ = ["conformance_session", "copy_outside", "pinned_conformance"]


def pinned_conformance() -> str:
    """``mono-quant-conformance==<this version>``: the suite version that is installed here.

    >>> pinned_conformance().startswith("mono-quant-conformance==")
    True
    """
    import importlib.metadata as md

    try:
        return f"mono-quant-conformance=={md.version('mono-quant-conformance')}"
    except md.PackageNotFoundError:
        raise LookupError(
            "mono-quant-conformance is not installed next to nox; pass "
            "conformance='mono-quant-conformance==X.Y.Z' explicitly."
        ) from None


def _project(plugin: Path) -> dict[str, Any]:
    with (plugin / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def conformance_session(
    session: nox.Session,
    *,
    plugin: str | os.PathLike[str] = ".",
    conformance: str | None = None,
    install: Sequence[str] = (),
    schemes: Sequence[str] = (),
    pytest_args: Sequence[str] = (),
    json_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Run the conformance suite on the wheel of the plugin in ``plugin``; return the work folder.

    Steps: install the plugin's build requirements and build its wheel (no build
    isolation, so ``install`` options such as constraints apply); install that
    wheel and ``conformance`` (default: :func:`pinned_conformance`) with the extra
    pip arguments ``install`` (``-c constraints.txt``, local wheels, ...); then, from
    an empty temporary folder so the source tree cannot shadow the wheel, run
    ``pytest --mono-quant-conformance --scheme=<schemes>`` (default: the plugin's
    distribution name) with the plugin's ``pyproject.toml`` as
    ``--mono-quant-config=PATH`` (one argument, so pytest never takes the plugin's
    own pytest configuration) and ``HYPOTHESIS_PROFILE`` defaulting to the
    derandomized ``mono-quant-ci``.
    ``session.posargs`` go to pytest.

    In a plugin's ``noxfile.py``::

        @nox.session
        def conformance(session):
            conformance_session(session, conformance="mono-quant-conformance==0.1.0")
    """
    root = Path(plugin).resolve()
    project = _project(root)
    pin = conformance or pinned_conformance()
    work = Path(tempfile.mkdtemp(prefix="mono-quant-conformance-"))
    requires = project.get("build-system", {}).get("requires", ["setuptools", "wheel"])
    session.install(*install, "build", *requires)
    dist = work / "dist"
    session.run(
        "python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(root), silent=True
    )  # fmt: skip
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel from {root}, found {[w.name for w in wheels]}")
    session.install(*install, str(wheels[0]), pin)
    run_dir = work / "run"
    run_dir.mkdir()
    session.chdir(str(run_dir))
    # Every value joined with "=": pytest reads a separate path argument as a test path
    # before this plugin is loaded, and would take the plugin's pyproject.toml as its own
    # configuration (its addopts included).
    args = ["python", "-m", "pytest", "-p", "no:cacheprovider", "--mono-quant-conformance"]
    args += [f"--scheme={name}" for name in schemes or [project["project"]["name"]]]
    args.append(f"--mono-quant-config={root / 'pyproject.toml'}")
    if json_path is not None:
        args.append(f"--mono-quant-json={os.fspath(json_path)}")
    run_env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-ci")}
    run_env.update(env or {})
    session.run(*args, *pytest_args, *session.posargs, env=run_env)
    return work


def copy_outside(source: str | os.PathLike[str]) -> Path:
    """A copy of the plugin folder ``source`` in a fresh temporary folder (no caches, no builds).

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "p"
    >>> (src / ".hypothesis").mkdir(parents=True)
    >>> _ = (src / "pyproject.toml").write_text("")
    >>> sorted(p.name for p in copy_outside(src).iterdir())
    ['pyproject.toml']
    """
    src = Path(source).resolve()
    target = Path(tempfile.mkdtemp(prefix="mono-quant-plugin-")) / src.name
    ignore = shutil.ignore_patterns(
        ".hypothesis", ".nox", ".pytest_cache", "build", "dist", "*.egg-info", "__pycache__"
    )
    shutil.copytree(src, target, ignore=ignore)
    return target
