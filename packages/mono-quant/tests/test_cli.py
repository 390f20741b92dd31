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
    from mono_quant.core import list_observers

    for name in list_observers():  # observer plugins, when installed, are listed like schemes
        assert f"observers: {name}" in out or f", {name}" in out


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
    import mono_quant.cli._api as api

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(api, "quantize_checkpoint", broken)
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
    import mono_quant.core as core
    from mono_quant.core import PluginRecord, PluginReport, plugin_report

    broken = PluginRecord(
        "bad", "mono-quant-bad", "9.9", "broken", error="failed to import 'bad': ImportError: nope"
    )
    fake = PluginReport((*plugin_report().plugins, broken), ("scheme 'x' is registered twice",))
    monkeypatch.setattr(core, "plugin_report", lambda: fake)
    code, out, _ = run("plugins")
    assert code == 0
    assert "mono-quant-bad 9.9 [bad]: broken; error: failed to import 'bad': ImportError: nope" in out
    assert "conflict: scheme 'x' is registered twice" in out
    data = json.loads(run("plugins", "--json")[1])
    assert data["plugins"][-1]["status"] == "broken" and data["conflicts"] == [
        "scheme 'x' is registered twice"
    ]


def test_short_options_f_and_q(tmp_path, ckpt):
    target = tmp_path / "q.safetensors"
    assert run("quantize", ckpt, "-o", target, "-q") == (0, "", "")
    assert run("quantize", ckpt, "-o", target, "-q", "-f", "--scheme", "symmetric") == (0, "", "")
    assert load_quantized(target)[load_quantized(target).quantized_names[0]].qparams.scheme == "symmetric"


def test_messages_name_command_line_flags_not_python_keywords(tmp_path, ckpt):
    target = tmp_path / "q.safetensors"
    target.write_bytes(b"x")
    _, _, err = run("quantize", ckpt, "-o", target)
    assert "pass --force to replace it" in err and "force=True" not in err
    _, _, err = run(
        "quantize", ckpt, "-o", tmp_path / "r.safetensors", "--granularity", "per-tensor", "--axis", "1"
    )
    assert "per-tensor takes neither --axis nor --group-size" in err


# --- exit codes ---------------------------------------------------------------------------------------


def test_every_error_class_maps_to_its_documented_exit_code():
    import mono_quant.cli as cli
    import mono_quant.core as core
    from mono_quant.cli import exit_code_for

    expected = {
        "MonoQuantError": 2,
        "UsageError": 2,
        "CheckpointError": 2,
        "UnknownDtypeError": 2,
        "UnknownSchemeError": 2,
        "UnsupportedDtypeError": 2,
        "UnsupportedGranularityError": 2,
        "UnsupportedOptionError": 2,
        "InputError": 3,
        "RefusedError": 4,
        "TensorError": 4,
        "NonFiniteError": 4,
        "CastOverflowError": 4,
        "RangeOverflowError": 4,
        "AxisError": 4,
        "GroupSizeError": 4,
        "EmptyTensorError": 4,
        "InputDtypeError": 4,
        "QParamsError": 4,
        "OutputError": 5,
        "SchemeContractError": 6,
        "PluginLoadError": 6,
        "RegistryConflictError": 6,
        "ObserverError": 4,
        "UnknownObserverError": 2,
        "ObserverContractError": 6,
    }
    errors = {
        name: getattr(module, name)
        for module in (core, cli)
        for name in module.__all__
        if isinstance(getattr(module, name), type)
        and issubclass(getattr(module, name), Exception)
        and not issubclass(getattr(module, name), Warning)
    }
    # A new error class needs a decision here (and a row in docs/cli.md).
    assert set(errors) == set(expected)
    for name, cls in errors.items():
        assert exit_code_for(cls("x")) == expected[name], name
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(ZeroDivisionError()) == 1
    assert set(expected.values()) | {0, 1, 130, 141} == set(EXIT_CODES)


def _nan_ckpt(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "nan.safetensors"
    save_file({"w": torch.tensor([[1.0, float("nan")]])}, path)
    return path


def _huge_ckpt(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "huge.safetensors"
    save_file({"w": torch.tensor([[1.0, 1e5]])}, path)
    return path


@pytest.mark.parametrize(
    ("case", "code"),
    [
        (lambda t, c: ("quantize", c, "-o", t / "q.safetensors", "--group-size", "0"), 2),
        (lambda t, c: ("quantize", c, "-o", t / "q.safetensors", "--group-size", "-4"), 2),
        (lambda t, c: ("quantize", c, "-o", t / "q.safetensors", "--scheme", "nope"), 2),
        (
            lambda t, c: ("quantize", c, "-o", t / "q.safetensors", "--nondivisible", "pad", "--dtype", "x"),
            2,
        ),
        (lambda t, c: ("quantize", t / "missing.safetensors", "-o", t / "q.safetensors"), 3),
        (lambda t, c: ("quantize", _nan_ckpt(t), "-o", t / "q.safetensors"), 4),
        (lambda t, c: ("quantize", _huge_ckpt(t), "-o", t / "q.safetensors", "--dtype", "float16"), 4),
        (lambda t, c: ("quantize", c, "-o", t / "q.safetensors", "--scheme", "int4-symmetric"), 4),
        (lambda t, c: ("quantize", c, "-o", c), 5),
    ],
    ids=[
        "group-size-0",
        "group-size-negative",
        "unknown-scheme",
        "unknown-dtype-with-pad",
        "missing-input",
        "nan",
        "float16-overflow",
        "conv-not-groupable",
        "output-is-input",
    ],
)
def test_each_kind_of_failure_exits_with_its_documented_code(tmp_path, ckpt, case, code):
    got, _, err = run(*case(tmp_path, ckpt))
    assert got == code, err
    assert err.count("\n") == 1 or err.startswith("usage:"), err


# --- the process: fast start, closed pipes -------------------------------------------------------


def test_help_version_and_usage_errors_do_not_import_torch():
    script = (
        "import io, sys\n"
        "from mono_quant.cli import main\n"
        "for argv in (['--help'], ['--version'], ['quantize'], ['dequantize', 'x'], ['inspect', '--nope'],"
        " ['quantize', 'x', '-o', 'y', '--group-size', '0']):\n"
        "    try:\n"
        "        main(argv, stdout=io.StringIO(), stderr=io.StringIO())\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout


def _closed_stdout(*argv):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mono_quant", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before anything is printed (like `| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    return proc.returncode, err


def test_a_closed_stdout_ends_a_listing_quietly_with_141():
    assert _closed_stdout("plugins", "--json") == (141, "")
    # argparse itself ignores a failed write of --help: quiet, and the help was the whole job.
    assert _closed_stdout("--help") == (0, "")


def test_a_closed_stdout_after_the_output_was_written_is_success(tmp_path, ckpt):
    code, err = _closed_stdout("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--all-tensors")
    assert (code, err) == (0, "")
    assert load_quantized(tmp_path / "q.safetensors").quantized_names


def test_inspect_counts_the_quantized_weights_of_a_compressed_tensors_shard_given_alone(tmp_path, ckpt):
    out = tmp_path / "ct"
    argv = ("quantize", ckpt, "-o", out, "--format", "compressed-tensors", "--scheme", "int4-symmetric")
    assert run(*argv, "--exclude", "*conv*", "-q")[0] == 0
    folder = json.loads(run("inspect", out, "--json")[1])
    (out / "config.json").unlink()  # the shard alone, as a user may copy it
    alone = json.loads(run("inspect", out / "model.safetensors", "--json")[1])
    assert folder["totals"]["quantized"] == alone["totals"]["quantized"] == 2  # the Linear weights
    rows = {r["name"]: r for r in alone["tensors"]}
    assert rows["layers.0.fc.weight"]["dtype"] == "int4" and rows["layers.0.fc.weight"]["shape"] == [64, 256]


def test_dequantize_dtype_casts_every_floating_tensor_and_keeps_integers(tmp_path, ckpt):
    run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "-q")
    assert (
        run("dequantize", tmp_path / "q.safetensors", "-o", tmp_path / "d.safetensors", "--dtype", "float16")[
            0
        ]
        == 0
    )
    out = load_file(tmp_path / "d.safetensors")
    original = load_file(ckpt)
    assert {k: v.dtype for k, v in out.items()} == {
        k: torch.float16 if v.is_floating_point() else v.dtype for k, v in original.items()
    }
    assert torch.equal(out["layers.0.fc.bias"], original["layers.0.fc.bias"].half())
    assert torch.equal(out["position_ids"], original["position_ids"])


def test_a_closed_stderr_never_stops_a_run(tmp_path, ckpt):
    from mono_quant.cli._atomic import _HOST, TEMP_MARKER

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".q.safetensors.{_HOST}-{dead.pid}-abc{TEMP_MARKER}"
    stale.mkdir()  # its removal is announced on stderr, which nobody reads any more
    proc = subprocess.Popen(
        [sys.executable, "-m", "mono_quant", "quantize", str(ckpt), "-o", str(tmp_path / "q.safetensors")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"SQNR" in out
    assert not stale.exists() and load_quantized(tmp_path / "q.safetensors").quantized_names


def test_the_cli_goes_through_a_plugins_own_quantize_tensor(tmp_path, ckpt, monkeypatch):
    """The one overridable one-call method (docs/plugins) is what `mono-quant quantize` runs."""
    import mono_quant.cli._plan as plan_module
    from mono_quant.core import get_scheme

    calls: list[str] = []
    base = type(get_scheme("symmetric"))

    class Counting(base):  # type: ignore[misc, valid-type]
        name = "counting-symmetric"

        def quantize_tensor(self, x, dtype=None, granularity=None, *, name=None, pack=False):
            calls.append(str(name))
            codes, qp = super().quantize_tensor(x, dtype, granularity, name=name, pack=pack)
            return codes, qp

    scheme = Counting()
    real = plan_module.get_scheme
    monkeypatch.setattr(plan_module, "get_scheme", lambda n: scheme if n == scheme.name else real(n))
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--scheme", scheme.name, "-q")
    assert code == 0, err
    assert sorted(calls) == sorted(load_quantized(tmp_path / "q.safetensors").quantized_names)
