"""--force, publishing and the report, through the CLI: mono-quant never destroys what it did not write."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from mono_quant.cli import load_quantized, main
from mono_quant.cli._options import MANIFEST


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def one_line_error(err: str) -> str:
    assert err.startswith("mono-quant: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def quantized_calls(monkeypatch):
    """How many tensors were quantized: a refusal "before any work" leaves it at 0."""
    import mono_quant.cli._stream as stream

    calls = []
    real = stream.quantize_tensor

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "quantize_tensor", counting)
    return calls


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- --force ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["compressed-tensors", "native"])
def test_force_never_deletes_a_folder_of_files_mono_quant_did_not_write(sharded, tmp_path, fmt):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("my notes")
    (project / "other-model.safetensors").write_bytes(b"another model")
    before = _files(project)
    code, _, err = run("quantize", sharded, "-o", project, "--format", fmt, "--force", "--exclude", "*conv*")
    assert code == 5 and "did not write this folder" in one_line_error(err)
    assert "--force replaces only a folder mono-quant wrote" in err
    assert _files(project) == before


def test_force_never_deletes_a_file_added_to_a_folder_mono_quant_wrote(sharded, tmp_path):
    out = tmp_path / "q"
    assert run("quantize", sharded, "-o", out, "-q")[0] == 0
    (out / "README.md").write_text("added by the user")
    code, _, err = run("quantize", sharded, "-o", out, "-q", "--force", "--scheme", "symmetric")
    assert code == 5 and "it holds README.md, which mono-quant did not write there" in err
    assert (out / "README.md").read_text() == "added by the user"


def test_force_replaces_a_folder_mono_quant_wrote_atomically(sharded, tmp_path):
    out = tmp_path / "q"
    assert run("quantize", sharded, "-o", out, "-q")[0] == 0
    first = _files(out)
    assert run("quantize", sharded, "-o", out, "-q", "-f", "--scheme", "symmetric")[0] == 0
    second = _files(out)
    assert set(first) == set(second) and first != second
    assert json.loads(second[MANIFEST])["files"] == {k: len(v) for k, v in second.items() if k != MANIFEST}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q", "sharded"]


def test_force_never_replaces_the_current_folder(sharded, tmp_path, monkeypatch):
    out = tmp_path / "q"
    assert run("quantize", sharded, "-o", out, "-q")[0] == 0  # even a folder mono-quant wrote
    before = _files(out)
    monkeypatch.chdir(out)
    code, _, err = run("quantize", sharded, "-o", ".", "-q", "--force")
    assert code == 5 and "is the current folder" in one_line_error(err)
    assert _files(out) == before


def test_force_never_replaces_a_fifo(ckpt, tmp_path, quantized_calls):
    fifo = tmp_path / "out.safetensors"
    os.mkfifo(fifo)
    code, _, err = run("quantize", ckpt, "-o", fifo, "--force")
    assert code == 5 and "is a FIFO (named pipe)" in one_line_error(err)
    assert fifo.is_fifo() and quantized_calls == []


def test_an_output_inside_the_input_folder_is_refused(sharded, quantized_calls):
    code, _, err = run("quantize", sharded, "-o", sharded / "int8", "-q")
    assert code == 5 and "is inside the input folder" in one_line_error(err)
    assert not (sharded / "int8").exists() and quantized_calls == []


def test_a_mono_quant_output_inside_an_input_folder_is_not_copied_along(sharded, tmp_path):
    """Folders that an older version let users write inside the input are never carried into new outputs."""
    assert run("quantize", sharded, "-o", tmp_path / "q", "-q")[0] == 0
    os.rename(tmp_path / "q", sharded / "old-output")
    assert run("quantize", sharded, "-o", tmp_path / "q2", "-q")[0] == 0
    assert not (tmp_path / "q2" / "old-output").exists()


def test_a_folder_output_named_like_a_file_is_refused(ckpt, tmp_path):
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "x.safetensors", "--format", "compressed-tensors")
    assert (
        code == 2 and "would be a folder (the compressed-tensors format is a folder) named like a file" in err
    )
    assert not (tmp_path / "x.safetensors").exists()


# --- --report ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing-folder", "the report folder .* does not exist"),
        ("input", "the report .* is inside the input folder"),
        ("output", "the report .* and the output .* overlap"),
        ("inside-output", "overlap"),
        ("exists", "already exists; pass --force"),
        ("folder", "is a folder but this report is a file"),
    ],
)
def test_a_bad_report_path_is_refused_before_any_work(sharded, tmp_path, where, message, quantized_calls):
    out = tmp_path / "q"
    (tmp_path / "old.json").write_text("keep")
    (tmp_path / "dir.json").mkdir()
    report = {
        "missing-folder": tmp_path / "nope" / "r.json",
        "input": sharded / "config.json",
        "output": out,
        "inside-output": out / "r.json",
        "exists": tmp_path / "old.json",
        "folder": tmp_path / "dir.json",
    }[where]
    code, _, err = run("quantize", sharded, "-o", out, "--report", report, "-q")
    assert code == 5, err
    assert re.search(message, one_line_error(err))
    assert quantized_calls == [] and not out.exists()
    assert (tmp_path / "old.json").read_text() == "keep"


def test_a_report_that_cannot_be_published_leaves_neither_output_nor_report(ckpt, tmp_path, monkeypatch):
    import mono_quant.cli._stream as stream

    report = tmp_path / "r.json"
    real = stream.quantize_tensor

    def meanwhile(*args, **kwargs):
        if not report.exists():
            report.mkdir()  # something takes the report's path while the run works
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "quantize_tensor", meanwhile)
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "q.safetensors", "--report", report, "-q")
    assert code == 5 and "appeared while this run was working" in one_line_error(err)
    assert not (tmp_path / "q.safetensors").exists() and report.is_dir() and list(report.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.json"]


def test_force_replaces_the_report_together_with_the_output(ckpt, tmp_path):
    out, report = tmp_path / "q.safetensors", tmp_path / "r.json"
    assert run("quantize", ckpt, "-o", out, "--report", report, "-q")[0] == 0
    first = json.loads(report.read_text())
    assert run("quantize", ckpt, "-o", out, "--report", report, "-q", "-f", "--scheme", "symmetric")[0] == 0
    assert (first["plan"]["scheme"], json.loads(report.read_text())["plan"]["scheme"]) == (
        "asymmetric",
        "symmetric",
    )
    assert json.loads(report.read_text())["totals"]["output_file_bytes"] == out.stat().st_size


# --- concurrent writers and killed runs -----------------------------------------------------------

_BLOCKED_RUN = textwrap.dedent(
    """
    import os, sys, time
    import mono_quant.cli._stream as stream
    real, calls = stream.quantize_tensor, []
    def blocking(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            print("READY", flush=True)
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.05)
        return real(*args, **kwargs)
    stream.quantize_tensor = blocking
    from mono_quant.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _blocked(release, *argv):
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_RUN, str(release), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_of_two_concurrent_writers_exactly_one_wins_and_its_output_stays(ckpt, sharded, tmp_path, kind):
    src = ckpt if kind == "file" else sharded
    out = tmp_path / ("q.safetensors" if kind == "file" else "q")
    slow = _blocked(tmp_path / "release", "quantize", src, "-o", out, "--scheme", "symmetric", "-q")
    try:
        # The other writer starts after the slow one checked the path, and finishes first.
        assert run("quantize", src, "-o", out, "-q")[0] == 0
        winner = load_quantized(out)
        (tmp_path / "release").touch()
        _, err = slow.communicate(timeout=120)
    finally:
        slow.kill()
    assert slow.returncode == 5 and "appeared while this run was working" in err
    assert load_quantized(out).equals(winner)  # the asymmetric winner, untouched
    assert all(".mono-quant-tmp" not in p.name for p in tmp_path.iterdir())


def test_a_sigkilled_run_leaves_one_hidden_entry_that_the_next_run_removes(sharded, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _blocked(tmp_path / "never", "quantize", sharded, "-o", out_dir / "q", "-q")
    proc.kill()
    proc.wait()
    left = [p.name for p in out_dir.iterdir()]
    assert len(left) == 1 and left[0].startswith(".q.") and left[0].endswith(".mono-quant-tmp")
    code, _, err = run("quantize", sharded, "-o", out_dir / "q", "-q")
    assert code == 0
    assert (
        f"mono-quant: warning: removed {out_dir / left[0]}, a temporary entry left by an interrupted" in err
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["q"]


# --- policies and selection --------------------------------------------------------------------


@pytest.fixture
def odd(tmp_path):
    path = tmp_path / "odd.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "fc.weight": torch.randn(8, 256, generator=g),
            "odd.weight": torch.randn(8, 300, generator=g),
            "conv.weight": torch.randn(8, 4, 3, 3, generator=g),
        },
        path,
    )
    return path


def test_int4_on_a_conv_or_odd_width_names_the_flags_that_let_it_through(odd, tmp_path):
    argv = ("quantize", odd, "-o", tmp_path / "q.safetensors", "--scheme", "int4-symmetric")
    code, _, err = run(*argv)
    assert code == 4
    assert "'conv.weight' (shape (8, 4, 3, 3)): group size 128 does not divide dimension 3 (size 3)" in err
    code, _, err = run(*argv, "--exclude", "conv*")
    assert code == 4
    assert "'odd.weight' (shape (8, 300)): group size 128 does not divide dimension 1 (size 300)" in err
    assert "--nondivisible skip" in err and "--nondivisible pad" in err and "--exclude odd.weight" in err


def test_nondivisible_skip_copies_such_tensors_and_reports_them(odd, tmp_path):
    out, report = tmp_path / "q.safetensors", tmp_path / "r.json"
    argv = ("quantize", odd, "-o", out, "--scheme", "int4-symmetric", "--nondivisible", "skip")
    assert run(*argv, "--report", report, "-q")[0] == 0
    rows = {t["name"]: t for t in json.loads(report.read_text())["tensors"]}
    assert rows["fc.weight"]["action"] == "quantized"
    for name in ("odd.weight", "conv.weight"):
        assert (
            rows[name]["action"] == "skipped"
            and "copied unquantized (--nondivisible skip)" in rows[name]["reason"]
        )
    loaded, original = load_quantized(out), load_file(odd)
    assert loaded.quantized_names == ["fc.weight"]
    assert torch.equal(loaded["odd.weight"], original["odd.weight"])


def test_nondivisible_pad_quantizes_the_partial_last_group(odd, tmp_path):
    out = tmp_path / "q.safetensors"
    argv = ("quantize", odd, "-o", out, "--scheme", "int4-symmetric", "--nondivisible", "pad", "-q")
    assert run(*argv, "--exclude", "conv*")[0] == 0
    qt = load_quantized(out)["odd.weight"]
    assert tuple(qt.qparams.scale.shape) == (8, 3)  # 128 + 128 + 44


def test_an_include_that_matches_nothing_is_a_usage_error(odd, tmp_path, quantized_calls):
    code, _, err = run("quantize", odd, "-o", tmp_path / "q.safetensors", "--include", "layers.*")
    assert code == 2 and "--include 'layers.*' matches no tensor" in one_line_error(err)
    assert quantized_calls == []


def test_an_exclude_that_matches_nothing_is_noted_in_the_report(odd, tmp_path):
    report = tmp_path / "r.json"
    assert (
        run("quantize", odd, "-o", tmp_path / "q.safetensors", "--exclude", "lm_head*", "--report", report)[0]
        == 0
    )
    assert "--exclude 'lm_head*' matched no tensor" in json.loads(report.read_text())["notes"]
