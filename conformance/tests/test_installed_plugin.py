"""A broken plugin installed as a real distribution is caught through its entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN_DIST = Path(__file__).parent / "broken_dist"
DIST = "mono-quant-broken-example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The broken plugin installed (from a copy of its folder) into a fresh target folder."""
    root = tmp_path_factory.mktemp("broken")
    source = root / "src"
    shutil.copytree(BROKEN_DIST, source)
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def suite(site: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "HYPOTHESIS_PROFILE")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mono-quant-conformance", *args],
        cwd=folder, capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip


def test_the_installed_broken_plugin_fails_on_the_intended_check(site: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = suite(
        site,
        tmp_path,
        "--scheme",
        DIST,
        "-k",
        "zero_range or distribution_loads",
        "--mono-quant-json",
        str(summary),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    results = json.loads(summary.read_text())["results"]
    loads = [r for r in results if r["check"] == "check_distribution_loads"]
    assert [r["status"] for r in loads] == ["passed"]
    failed = [r for r in results if r["status"] == "failed"]
    assert failed and {r["check"] for r in failed} == {"check_zero_range_gives_finite_scale"}
    assert all(r["distribution"] == DIST and r["version"] == "0.0.1" for r in failed)
    assert "scale must be finite and > 0" in failed[0]["message"]
    out = done.stdout
    assert f"[{DIST}:broken-scale-not-clamped] check_zero_range_gives_finite_scale" in out
    assert "how to fix: see 'check_zero_range_gives_finite_scale'" in out


def test_declared_expected_failures_turn_into_xfail(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "plugin" / "pyproject.toml"
    config.parent.mkdir()
    config.write_text(
        "[tool.mono-quant.conformance.expected-failures]\n"
        f'"check_zero_range_gives_finite_scale[{DIST}:broken-scale-not-clamped]" = "no eps floor yet (#1)"\n'
    )
    summary = tmp_path / "summary.json"
    done = suite(
        site, tmp_path, "--scheme", "broken-scale-not-clamped", "-k", "zero_range",
        f"--mono-quant-config={config}", f"--mono-quant-json={summary}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(summary.read_text())["results"]
    assert results and {r["status"] for r in results} == {"xfail"}
    assert all(r["expected_reason"] == "no eps floor yet (#1)" for r in results)


def test_a_plugin_that_fails_to_import_is_reported_not_skipped(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "mono_quant_ghost-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mono-quant-ghost\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[mono_quant]\nghost = mono_quant.ghost_is_not_here\n")
    summary = tmp_path / "summary.json"
    done = suite(site, tmp_path, "--scheme", "mono-quant-ghost", "--mono-quant-json", str(summary))
    assert done.returncode == 1, done.stdout + done.stderr
    results = {r["check"]: r for r in json.loads(summary.read_text())["results"]}
    result = results["check_distribution_loads"]
    assert (result["status"], result["distribution"]) == ("failed", "mono-quant-ghost")
    assert results["check_registered_dtypes_are_valid"]["status"] == "skipped"
    assert "failed to import" in result["message"] and "ghost_is_not_here" in result["message"]
