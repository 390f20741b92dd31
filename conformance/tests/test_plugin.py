"""The pytest plugin, run as users run it: in a subprocess, from a folder outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys

def test_probe():
    assert "torch" not in sys.modules
    assert "mono_quant.core" not in sys.modules
"""


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "HYPOTHESIS_PROFILE")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def collected_ids(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("mono-quant-conformance::")]


def test_importing_the_plugin_imports_neither_torch_nor_core() -> None:
    code = (
        "import sys, mono_quant.conformance.plugin, mono_quant.conformance; "
        "bad = sorted(m for m in ('torch', 'mono_quant.core', 'hypothesis') if m in sys.modules); "
        "sys.exit(f'imported: {bad}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_without_the_flag_the_plugin_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    done = pytest_in(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "mono-quant-conformance" not in done.stdout.replace("plugins: mono-quant-conformance", "")


def test_the_flag_alone_runs_only_the_suite_and_with_paths_both(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    alone = pytest_in(
        tmp_path, "--mono-quant-conformance", "--scheme", "symmetric", "-k", "zero_range", "--co", "-q"
    )
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "test_probe" not in alone.stdout
    both = pytest_in(
        tmp_path, "test_probe.py", "--mono-quant-conformance", "--scheme", "symmetric",
        "-k", "zero_range or probe", "--co", "-q",
    )  # fmt: skip
    assert "test_probe.py::test_probe" in both.stdout
    assert collected_ids(both.stdout)


def test_k_selects_checks_by_behaviour_and_ids_name_distribution_scheme_and_case(tmp_path: Path) -> None:
    done = pytest_in(
        tmp_path, "--mono-quant-conformance", "--scheme", "mono-quant-int4", "-k", "zero_range", "--co", "-q"
    )
    ids = collected_ids(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ids and all("check_zero_range_gives_finite_scale[" in i for i in ids)
    # a distribution name selects every scheme it provides
    assert any("[mono-quant-int4:int4-symmetric-int4-per_group]" in i for i in ids)
    assert any("[mono-quant-int4:int4-asymmetric-uint4-per_tensor]" in i for i in ids)


def test_an_unknown_scheme_is_a_usage_error_listing_what_is_installed(tmp_path: Path) -> None:
    done = pytest_in(tmp_path, "--mono-quant-conformance", "--scheme", "no-such-scheme")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "no installed scheme or distribution is called 'no-such-scheme'" in done.stderr
    assert "symmetric" in done.stderr and "mono-quant-sym" in done.stderr


def test_the_report_header_names_versions_and_capabilities(tmp_path: Path) -> None:
    done = pytest_in(tmp_path, "--mono-quant-conformance", "--scheme", "symmetric", "--co", "-k", "packing")
    header = done.stdout
    assert "mono-quant-conformance " in header and "mono-quant-core " in header and "torch " in header
    assert "profile mono-quant-ci: 25 examples, derandomized" in header
    assert (
        "mono-quant-sym:symmetric " in header and "granularities per_tensor, per_channel, per_group" in header
    )


def test_the_suite_is_self_contained_out_of_tree_and_writes_json_and_junit(tmp_path: Path) -> None:
    assert not str(tmp_path).startswith(str(Path(__file__).resolve().parents[2]))
    summary, junit = tmp_path / "out" / "summary.json", tmp_path / "out" / "junit.xml"
    done = pytest_in(
        tmp_path, "--mono-quant-conformance", "--scheme", "mono-quant-sym", "--mono-quant-max-examples", "3",
        "-k", "not synthetic and not torchao and not custom",
        "--mono-quant-json", str(summary), "--junitxml", str(junit), "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    data = json.loads(summary.read_text())
    assert data["environment"]["max_examples"] == 3
    assert {s["id"] for s in data["subjects"]} == {"mono-quant-sym", "mono-quant-sym:symmetric"}
    statuses = {r["status"] for r in data["results"]}
    assert statuses <= {"passed", "skipped"} and "passed" in statuses
    first = data["results"][0]
    assert {"scheme", "distribution", "version", "check", "status", "reason", "hypothesis_seed"} <= set(first)
    seeded = [r for r in data["results"] if r["hypothesis_seed"] is not None]
    assert seeded and all(r["check"] != "check_distribution_loads" for r in seeded)
    assert "check_zero_range_gives_finite_scale" in junit.read_text()


def test_a_stale_expected_failure_fails_the_run_or_warns(tmp_path: Path) -> None:
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("check_zero_range_gives_finite_scale[symmetric-int8-per_tensor]  # pretend it fails\n")
    args = ["--mono-quant-conformance", "--scheme", "symmetric", "-k", "zero_range and int8-per_tensor"]
    failing = pytest_in(tmp_path, *args, "--mono-quant-expected-failures", str(xfails))
    assert failing.returncode == 1
    assert "stale expected failure" in failing.stdout and "remove the entry" in failing.stdout
    warning = pytest_in(
        tmp_path, *args, "--mono-quant-expected-failures", str(xfails), "--mono-quant-stale", "warn"
    )
    assert warning.returncode == 0, warning.stdout
    assert "STALE" in warning.stdout


def test_expected_failures_are_read_from_the_rootdir_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.mono-quant.conformance.expected-failures]\n"
        '"check_zero_range_gives_finite_scale[symmetric-int8-per_tensor]" = "pretend it fails"\n'
    )
    done = pytest_in(
        tmp_path, "--mono-quant-conformance", "--scheme", "symmetric", "-k", "zero_range and int8-per_tensor"
    )
    assert done.returncode == 1
    assert "pretend it fails" in done.stdout


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("check_zero_range_gives_finite_scale[symmetric]", "has no reason"),
        ("check_zero_range_is_finite  # typo in the check name", "name no known check"),
    ],
)
def test_a_malformed_expected_failure_is_a_usage_error(tmp_path: Path, line: str, message: str) -> None:
    xfails = tmp_path / "xfails.txt"
    xfails.write_text(line + "\n")
    done = pytest_in(
        tmp_path, "--mono-quant-conformance", "--mono-quant-expected-failures", str(xfails), "--co"
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in done.stderr
