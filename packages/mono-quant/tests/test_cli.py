from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mono_quant.cli import EXIT_CODES, dequantize_state_dict, load_quantized, main
from mono_quant.cli._checkpoint import same_bits


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_plugins_lists_distributions_schemes_and_dtypes():
    code, out, _ = run("plugins")
    assert code == 0
    assert "mono-quant-core" in out and "mono-quant-int4" in out
    assert "int4-symmetric" in out and "uint4" in out


def test_plugins_json_is_the_plugin_report():
    code, out, _ = run("plugins", "--json")
    data = json.loads(out)
    assert code == 0
    by_dist = {p["distribution"]: p for p in data["plugins"]}
    assert by_dist["mono-quant-sym"]["schemes"] == ["symmetric"]
    assert by_dist["mono-quant-sym"]["status"] == "loaded"


def test_quantize_prints_the_table_writes_the_json_report_and_the_output(tmp_path, ckpt):
    code, out, err = run(
        "quantize",
        ckpt,
        "-o",
        tmp_path / "q.safetensors",
        "--scheme",
        "symmetric",
        "--report",
        tmp_path / "r.json",
    )
    assert (code, err) == (0, "")
    assert "layers.0.fc.weight" in out and "ratio" in out and "SQNR" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["quantized"] == 4
    assert report["plan"]["scheme"] == "symmetric"
    assert load_quantized(tmp_path / "q.safetensors").quantized_names == [
        t["name"] for t in report["tensors"] if t["action"] == "quantized"
    ]


def test_quiet_prints_nothing(tmp_path, ckpt):
    assert run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--quiet") == (0, "", "")


def test_cli_options_reach_the_plan(tmp_path, ckpt):
    code, _, _ = run(
        "quantize",
        ckpt,
        "-o",
        tmp_path / "q.safetensors",
        "--scheme",
        "int4-asymmetric",
        "--dtype",
        "uint4",
        "--granularity",
        "per-group",
        "--axis",
        "-1",
        "--group-size",
        "32",
        "--profile",
        "torchao",
        "--include",
        "layers.*",
        "--exclude",
        "*conv*",
        "--report",
        tmp_path / "r.json",
        "--quiet",
    )
    assert code == 0
    plan = json.loads((tmp_path / "r.json").read_text())["plan"]
    assert plan | {"scheme": "int4-asymmetric", "dtype": "uint4", "profile": "torchao"} == plan
    assert plan["granularity"] == {"kind": "per_group", "axis": -1, "group_size": 32}
    assert load_quantized(tmp_path / "q.safetensors").quantized_names == [
        "layers.0.fc.weight",
        "layers.1.fc.weight",
    ]


def test_dequantize_cli_is_bit_identical_to_the_python_api(tmp_path, ckpt):
    run(
        "quantize",
        ckpt,
        "-o",
        tmp_path / "q.safetensors",
        "--scheme",
        "int4-symmetric",
        "--exclude",
        "*conv*",
    )
    code, out, _ = run("dequantize", tmp_path / "q.safetensors", "-o", tmp_path / "d.safetensors")
    assert code == 0 and "wrote" in out
    api = dequantize_state_dict(load_quantized(tmp_path / "q.safetensors"))
    cli = load_file(tmp_path / "d.safetensors")
    assert set(api) == set(cli) and all(same_bits(cli[k], v) for k, v in api.items())
    run("dequantize", tmp_path / "q.safetensors", "-o", tmp_path / "d32.safetensors", "--dtype", "float32")
    assert load_file(tmp_path / "d32.safetensors")["layers.1.fc.weight"].dtype == torch.float32


def test_inspect_shows_schemes_dtypes_and_producing_versions(tmp_path, ckpt):
    run(
        "quantize",
        ckpt,
        "-o",
        tmp_path / "q.safetensors",
        "--scheme",
        "int4-symmetric",
        "--exclude",
        "*conv*",
    )
    code, out, _ = run("inspect", tmp_path / "q.safetensors")
    assert code == 0
    assert "native checkpoint" in out and "written by:" in out and "mono-quant-core" in out
    assert "int4-symmetric" in out and "per-group(axis=1, group_size=128)" in out
    code, out, _ = run("inspect", tmp_path / "q.safetensors", "--json")
    info = json.loads(out)
    rows = {r["name"]: r for r in info["tensors"]}
    assert rows["embed.weight"]["quantized"] and rows["embed.weight"]["shape"] == [32, 256]
    assert rows["embed.weight"]["bytes"] == 32 * 128 + 32 * 2 * 4 * 2  # packed codes + scale + zero-point
    assert not rows["position_ids"]["quantized"]
    assert info["producer"][0]["scheme"] == "int4-symmetric"


def test_inspect_reads_plain_and_compressed_tensors_checkpoints(tmp_path, ckpt):
    code, out, _ = run("inspect", ckpt, "--json")
    assert code == 0 and json.loads(out)["format"] == "plain"
    run(
        "quantize",
        ckpt,
        "-o",
        tmp_path / "ct",
        "--scheme",
        "int4-symmetric",
        "--format",
        "compressed-tensors",
        "--exclude",
        "*conv*",
        "--exclude",
        "embed*",
        "--quiet",
    )
    info = json.loads(run("inspect", tmp_path / "ct", "--json")[1])
    rows = {r["name"]: r for r in info["tensors"]}
    assert info["format"] == "compressed-tensors"
    assert rows["layers.0.fc.weight"]["dtype"] == "int4" and rows["layers.0.fc.weight"]["shape"] == [64, 256]


def test_verbose_adds_the_traceback_to_the_one_line_error(tmp_path, ckpt):
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--scheme", "nope")
    assert (
        code == 2 and err.count("\n") == 1 and err.startswith("mono-quant: error: 'nope' is not an installed")
    )
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--scheme", "nope", "--verbose")
    assert code == 2 and "Traceback (most recent call last)" in err


def test_an_unexpected_exception_is_exit_1_and_asks_for_a_report(tmp_path, ckpt, monkeypatch):
    import mono_quant.cli._cli as cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "quantize_checkpoint", broken)
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "q.safetensors")
    assert code == 1 and "internal error: ZeroDivisionError: oops" in err and "--verbose" in err


def test_usage_errors_exit_2(tmp_path):
    assert run("quantize")[0] == 2
    assert run()[0] == 2
    assert run("quantize", "x", "-o", "y", "--granularity", "blocks")[0] == 2


def test_every_documented_exit_code_is_listed_in_help():
    code, out, _ = run("--help")
    assert code == 0
    for number in EXIT_CODES:
        assert f"{number} " in out


def _env():
    return {**os.environ, "CI": "1", "PYTHONWARNINGS": "ignore"}


def test_python_dash_m_mono_quant_runs_the_cli(tmp_path, ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "mono_quant", "quantize", str(ckpt), "-o", str(tmp_path / "q.safetensors")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "q.safetensors").exists() and "SQNR" in proc.stdout


def test_the_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "mono-quant")
    if not os.path.exists(script):
        pytest.skip("no console script next to this interpreter")
    proc = subprocess.run(
        [script, "--version"], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("mono-quant ")


def test_plugins_shows_a_broken_plugin_with_its_cause(monkeypatch):
    import mono_quant.cli._cli as cli
    from mono_quant.core import PluginRecord, PluginReport, plugin_report

    broken = PluginRecord(
        "bad", "mono-quant-bad", "9.9", "broken", error="failed to import 'bad': ImportError: nope"
    )
    fake = PluginReport((*plugin_report().plugins, broken), ("scheme 'x' is registered twice",))
    monkeypatch.setattr(cli, "plugin_report", lambda: fake)
    code, out, _ = run("plugins")
    assert code == 0
    assert "mono-quant-bad 9.9 [bad]: broken; error: failed to import 'bad': ImportError: nope" in out
    assert "conflict: scheme 'x' is registered twice" in out
    data = json.loads(run("plugins", "--json")[1])
    assert data["plugins"][-1]["status"] == "broken" and data["conflicts"] == [
        "scheme 'x' is registered twice"
    ]
