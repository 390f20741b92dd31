"""Plugin loading with real tiny distributions, built and installed with pip (no mocks).

The distributions under tests/plugins/ are installed into a --target folder that
subprocesses put on PYTHONPATH, so entry points are discovered exactly as for a
user's plugin. Each scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PLUGINS = Path(__file__).parent / "plugins"
BROKEN = {
    "mqtest-import-error": "failed to import",
    "mqtest-hook-raises": "boom from mqtest-hook-raises",
    "mqtest-misspelled": "mono_quant_schemas",
    "mqtest-unmarked": "without the @hookimpl marker",
    "mqtest-half-marked": "mono_quant_dtypes without the @hookimpl marker",
}


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugins")
    dists = sorted(str(p) for p in PLUGINS.iterdir() if (p / "pyproject.toml").exists())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *dists,
        ],
        check=True,
    )
    return target


@pytest.fixture(scope="module")
def default_report(plugin_path: Path) -> dict[str, Any]:
    """The plugin report with every test plugin installed and nothing disabled."""
    return run_snippet(plugin_path, REPORT)


def run_snippet(plugin_path: Path, code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with the test plugins importable; it prints JSON."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MONO_QUANT_")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), full_env.get("PYTHONPATH", "")])
    full_env.update(env)
    prelude = textwrap.dedent(
        """
        import json, warnings
        warnings.simplefilter("always")
        import mono_quant.core as mq
        out = {}
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code) + "\nprint(json.dumps(out))"],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


REPORT = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report = mq.plugin_report()
out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, mq.PluginWarning)]
out["plugins"] = {p.distribution: p.to_dict() for p in report.plugins}
out["conflicts"] = list(report.conflicts)
out["schemes"] = mq.list_schemes()
out["dtypes"] = mq.list_dtypes()
"""


def test_good_plugin_loads_beside_every_broken_one(plugin_path: Path) -> None:
    out = run_snippet(
        plugin_path,
        REPORT
        + """
import torch
s = mq.get_scheme("test-good")
qp = s.compute_qparams(torch.tensor([-1.0, 2.0]), "int6")
out["good"] = [s.distribution, qp.dtype, qp.scheme, qp.zero_point.item()]
""",
    )
    assert out["plugins"]["mqtest-good"]["status"] == "loaded"
    assert out["plugins"]["mqtest-good"]["schemes"] == ["test-good"]
    assert "test-good" in out["schemes"] and "int6" in out["dtypes"]
    assert out["good"] == ["mqtest-good", "int6", "test-good", -11]


@pytest.mark.parametrize(("dist", "cause"), sorted(BROKEN.items()))
def test_each_broken_plugin_is_reported_with_its_distribution_and_cause(
    default_report: dict[str, Any], dist: str, cause: str
) -> None:
    out = default_report
    record = out["plugins"][dist]
    assert record["status"] == "broken"
    assert record["version"] == "0.0.1"
    assert cause in record["error"]
    assert record["schemes"] == [] and record["dtypes"] == []
    assert any(dist in w and cause in w for w in out["warnings"]), out["warnings"]


def test_a_plugin_whose_hook_raises_contributes_nothing(default_report: dict[str, Any]) -> None:
    # mqtest-hook-raises has a working dtype hook; a broken plugin is all or nothing.
    assert "int5" not in default_report["dtypes"]


def test_duplicate_scheme_names_are_ambiguous_and_name_both_distributions(plugin_path: Path) -> None:
    out = run_snippet(
        plugin_path,
        REPORT
        + """
for name in ("test-dup",):
    try:
        mq.get_scheme(name)
    except mq.RegistryConflictError as exc:
        out["scheme_error"] = str(exc)
try:
    mq.get_dtype("int7")
except mq.RegistryConflictError as exc:
    out["dtype_error"] = str(exc)
""",
    )
    assert "test-dup" not in out["schemes"]
    assert "test-dup-b-only" in out["schemes"], "the rest of a conflicting plugin still loads"
    for key in ("scheme_error", "dtype_error"):
        assert "mqtest-dup-a" in out[key] and "mqtest-dup-b" in out[key]
        assert "MONO_QUANT_DISABLE_PLUGINS" in out[key]
    assert any("test-dup" in c and "mqtest-dup-a and mqtest-dup-b" in c for c in out["conflicts"])
    assert any("int7" in c for c in out["conflicts"])


def test_strict_mode_raises_listing_every_problem(plugin_path: Path) -> None:
    out = run_snippet(
        plugin_path,
        """
try:
    mq.plugin_report()
except mq.PluginLoadError as exc:
    out["error"] = str(exc)
""",
        MONO_QUANT_STRICT_PLUGINS="1",
    )
    for dist in [*BROKEN, "test-dup", "int7"]:
        assert dist in out["error"]


def test_disable_variable_skips_the_named_distributions(plugin_path: Path) -> None:
    out = run_snippet(
        plugin_path,
        REPORT + 'out["dup_version"] = mq.get_scheme("test-dup").version\n',
        MONO_QUANT_DISABLE_PLUGINS="mqtest-dup-b, mqtest_import_error",
    )
    assert out["plugins"]["mqtest-dup-b"]["status"] == "disabled"
    assert out["plugins"]["mqtest-import-error"]["status"] == "disabled"
    assert out["dup_version"] == "0.0.1", "with dup-b disabled, dup-a's scheme is unambiguous"
    assert not any("mqtest-import-error" in w for w in out["warnings"])


def test_disable_all_leaves_only_core(plugin_path: Path) -> None:
    out = run_snippet(plugin_path, REPORT, MONO_QUANT_DISABLE_PLUGINS="all")
    assert out["schemes"] == []
    assert out["dtypes"] == [
        "bfloat16",
        "float16",
        "float8_e4m3fn",
        "float8_e5m2",
        "int16",
        "int32",
        "int8",
        "uint8",
    ]
    assert out["warnings"] == []
    statuses = {d: p["status"] for d, p in out["plugins"].items()}
    assert statuses.pop("mono-quant-core") == "loaded"
    assert set(statuses.values()) == {"disabled"}


def test_reload_plugins_picks_up_a_changed_environment(plugin_path: Path) -> None:
    out = run_snippet(
        plugin_path,
        """
import os
warnings.simplefilter("ignore")
out["before"] = "test-good" in mq.list_schemes()
os.environ["MONO_QUANT_DISABLE_PLUGINS"] = "mqtest-good"
out["cached"] = "test-good" in mq.list_schemes()
mq.reload_plugins()
out["after"] = "test-good" in mq.list_schemes()
""",
    )
    assert (out["before"], out["cached"], out["after"]) == (True, True, False)


def test_loading_is_lazy(plugin_path: Path) -> None:
    # Importing core must not import plugin modules; first use does.
    out = run_snippet(
        plugin_path,
        """
import sys
out["at_import"] = "mqtest_good" in sys.modules
warnings.simplefilter("ignore")
mq.list_schemes()
out["after_use"] = "mqtest_good" in sys.modules
""",
    )
    assert out == {**out, "at_import": False, "after_use": True}
