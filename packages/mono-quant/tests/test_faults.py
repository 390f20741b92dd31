"""Bad input and faults: each fails with one clear line and its exit code, writes nothing, loses nothing."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from mono_quant.cli import load_quantized, main
from mono_quant.cli._checkpoint import same_bits
from mono_quant.core import list_dtypes, list_schemes


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def one_line_error(err: str) -> str:
    assert err.startswith("mono-quant: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def fails_cleanly(argv, code, out_dir, leftovers, *inputs_unchanged):
    got, _, err = run(*argv)
    assert got == code, err
    for check in inputs_unchanged:
        check()
    assert leftovers(out_dir) == []
    assert list(out_dir.iterdir()) == []
    return one_line_error(err)


# --- damaged input ---------------------------------------------------------------------------


def _header(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return data, n, json.loads(data[8 : 8 + n])


def test_a_truncated_file_is_refused(ckpt, out_dir, leftovers, unchanged):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) - 100])
    check = unchanged(ckpt)
    err = fails_cleanly(["quantize", ckpt, "-o", out_dir / "q.safetensors"], 3, out_dir, leftovers, check)
    assert "model.safetensors is not a readable safetensors file" in err and "truncated or corrupt" in err


def test_a_corrupt_header_is_refused(ckpt, out_dir, leftovers, unchanged):
    data, n, _ = _header(ckpt)
    ckpt.write_bytes(data[:8] + b"{" + b"#" * (n - 1) + data[8 + n :])
    err = fails_cleanly(
        ["quantize", ckpt, "-o", out_dir / "q.safetensors"], 3, out_dir, leftovers, unchanged(ckpt)
    )
    assert "invalid JSON" in err


def test_a_header_claiming_more_bytes_than_the_file_has_is_refused(ckpt, out_dir, leftovers, unchanged):
    data, n, header = _header(ckpt)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    header[last]["data_offsets"][1] += 4096  # the file is 4 KiB short of what the header claims
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    ckpt.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    err = fails_cleanly(
        ["quantize", ckpt, "-o", out_dir / "q.safetensors"], 3, out_dir, leftovers, unchanged(ckpt)
    )
    assert "not a readable safetensors file" in err


def test_a_header_length_beyond_the_file_is_refused(ckpt, out_dir, leftovers, unchanged):
    data = ckpt.read_bytes()
    ckpt.write_bytes((len(data) * 2).to_bytes(8, "little") + data[8:])
    fails_cleanly(["quantize", ckpt, "-o", out_dir / "q.safetensors"], 3, out_dir, leftovers, unchanged(ckpt))


def test_one_damaged_shard_stops_the_run_before_anything_is_written(sharded, out_dir, leftovers, unchanged):
    shard = sharded / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-7])
    err = fails_cleanly(["quantize", sharded, "-o", out_dir / "q"], 3, out_dir, leftovers, unchanged(sharded))
    assert "model-00002-of-00002.safetensors" in err


def test_an_unsafe_pickle_is_refused(tmp_path, out_dir, leftovers):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2, 2), "cfg": Exception("not a tensor")}, path)
    err = fails_cleanly(["quantize", path, "-o", out_dir / "q.safetensors"], 3, out_dir, leftovers)
    assert "weights_only=True" in err


def test_a_missing_input_is_refused(tmp_path, out_dir, leftovers):
    err = fails_cleanly(
        ["quantize", tmp_path / "nope.safetensors", "-o", out_dir / "q"], 3, out_dir, leftovers
    )
    assert "does not exist" in err


# --- tensors that cannot be quantized as asked -----------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_stop_the_run_naming_the_tensor(
    tmp_path, state_dict, out_dir, leftovers, unchanged, bad
):
    state_dict["layers.0.fc.weight"][3, 7] = bad
    save_file(state_dict, tmp_path / "in.safetensors")
    argv = ["quantize", tmp_path / "in.safetensors", "-o", out_dir / "q.safetensors"]
    err = fails_cleanly(argv, 4, out_dir, leftovers, unchanged(tmp_path / "in.safetensors"))
    assert "'layers.0.fc.weight' holds 1 non-finite value(s)" in err
    assert "--nonfinite skip" in err


def test_nonfinite_skip_copies_the_tensor_unquantized_and_says_so(tmp_path, state_dict):
    state_dict["layers.0.fc.weight"][0, 0] = float("nan")
    state_dict["layers.0.fc.weight"][1, 1] = float("inf")
    save_file(state_dict, tmp_path / "in.safetensors")
    out = tmp_path / "q.safetensors"
    code, text, err = run(
        "quantize",
        tmp_path / "in.safetensors",
        "-o",
        out,
        "--nonfinite",
        "skip",
        "--report",
        tmp_path / "r.json",
    )
    assert (code, err) == (0, "")
    assert "layers.0.fc.weight" in text and "skipped" in text
    row = next(
        t
        for t in json.loads((tmp_path / "r.json").read_text())["tensors"]
        if t["name"] == "layers.0.fc.weight"
    )
    assert row["action"] == "skipped" and row["reason"].startswith("2 non-finite value(s)")
    assert same_bits(load_file(out)["layers.0.fc.weight"], state_dict["layers.0.fc.weight"])
    assert "layers.0.fc.weight" not in load_quantized(out).quantized_names
    assert "layers.1.fc.weight" in load_quantized(out).quantized_names


def test_non_finite_values_stop_a_float16_cast_too(tmp_path, out_dir, leftovers):
    save_file({"w": torch.tensor([[1.0, float("nan")]])}, tmp_path / "in.safetensors")
    argv = [
        "quantize",
        tmp_path / "in.safetensors",
        "-o",
        out_dir / "q.safetensors",
        "--scheme",
        "symmetric",
        "--dtype",
        "float16",
    ]
    assert "'w' holds 1 non-finite" in fails_cleanly(argv, 4, out_dir, leftovers)


def test_a_group_size_that_does_not_fit_names_the_tensor_and_both_sizes(
    tmp_path, out_dir, leftovers, unchanged
):
    save_file(
        {"ok.weight": torch.randn(4, 256), "odd.weight": torch.randn(4, 300)}, tmp_path / "in.safetensors"
    )
    argv = [
        "quantize",
        tmp_path / "in.safetensors",
        "-o",
        out_dir / "q.safetensors",
        "--scheme",
        "int4-symmetric",
    ]
    err = fails_cleanly(argv, 4, out_dir, leftovers, unchanged(tmp_path / "in.safetensors"))
    assert "'odd.weight'" in err and "(size 300)" in err and "group size 128" in err
    # The way out is a flag the command line has, not a Python keyword.
    assert "--nondivisible skip" in err and "nondivisible=" not in err


def test_an_unknown_scheme_lists_the_installed_ones(ckpt, out_dir, leftovers):
    err = fails_cleanly(["quantize", ckpt, "-o", out_dir / "q", "--scheme", "gptq"], 2, out_dir, leftovers)
    assert "'gptq' is not an installed scheme" in err
    assert all(name in err for name in list_schemes())


def test_an_unknown_dtype_lists_the_registered_ones(ckpt, out_dir, leftovers):
    err = fails_cleanly(["quantize", ckpt, "-o", out_dir / "q", "--dtype", "int3"], 2, out_dir, leftovers)
    assert "'int3' is not a registered quant dtype" in err
    assert all(name in err for name in list_dtypes())


# --- the output ----------------------------------------------------------------------------


def test_an_output_in_a_missing_folder_is_refused(ckpt, tmp_path):
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "no" / "q.safetensors")
    assert code == 5 and "does not exist; create it first" in one_line_error(err)


def test_an_output_under_a_file_is_refused(ckpt, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "file" / "q.safetensors")
    assert code == 5 and one_line_error(err)


def test_an_unwritable_output_folder_is_refused(ckpt, out_dir, leftovers, monkeypatch, unchanged):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    err = fails_cleanly(
        ["quantize", ckpt, "-o", out_dir / "q.safetensors"], 5, out_dir, leftovers, unchanged(ckpt)
    )
    assert "Permission denied" in err and "choose a writable output location" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(ckpt, out_dir):
    out_dir.chmod(0o500)
    try:
        code, _, err = run("quantize", ckpt, "-o", out_dir / "q.safetensors")
    finally:
        out_dir.chmod(0o700)
    assert code == 5 and "Permission denied" in one_line_error(err)


def test_the_input_is_never_the_output(ckpt, leftovers, unchanged):
    check = unchanged(ckpt)
    code, _, err = run("quantize", ckpt, "-o", ckpt, "--force")
    assert code == 5 and "would overwrite the input" in one_line_error(err)
    check()


def test_an_existing_output_is_kept_without_force(ckpt, out_dir):
    target = out_dir / "q.safetensors"
    target.write_bytes(b"precious")
    code, _, err = run("quantize", ckpt, "-o", target)
    assert code == 5 and "already exists; pass --force" in one_line_error(err)
    assert target.read_bytes() == b"precious"
    assert run("quantize", ckpt, "-o", target, "--force", "--quiet")[0] == 0
    assert target.read_bytes() != b"precious"


def _disk_full_after(monkeypatch, calls):
    import mono_quant.cli._safetensors as st

    real = st._write_all
    count = 0

    def full(f, data):
        nonlocal count
        count += 1
        if count > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(st, "_write_all", full)


def _writes(monkeypatch, ckpt, tmp_path):
    """How many times a successful run calls ``_write_all``, and the first byte of its last write."""
    import mono_quant.cli._safetensors as st

    real = st._write_all
    firsts = []

    def spy(f, data):
        firsts.append(bytes(data[:1]))
        real(f, data)

    monkeypatch.setattr(st, "_write_all", spy)
    assert run("quantize", ckpt, "-o", tmp_path / "first.safetensors", "--quiet")[0] == 0
    monkeypatch.setattr(st, "_write_all", real)
    return len(firsts), firsts[-1]


@pytest.mark.parametrize("point", ["first tensor", "fifth write", "header"])
def test_a_full_disk_leaves_no_partial_output(
    ckpt, tmp_path, out_dir, leftovers, monkeypatch, unchanged, point
):
    count, last = _writes(monkeypatch, ckpt, tmp_path)
    assert count > 6 and last == b"{"  # tensors first, then the header into the room left for it
    _disk_full_after(monkeypatch, {"first tensor": 0, "fifth write": 5, "header": count - 1}[point])
    err = fails_cleanly(
        ["quantize", ckpt, "-o", out_dir / "q.safetensors"], 5, out_dir, leftovers, unchanged(ckpt)
    )
    assert "No space left on device [errno 28]" in err and "Nothing was written" in err


def test_a_full_disk_while_assembling_a_file_whose_header_outgrew_its_room_leaves_no_partial_output(
    ckpt, out_dir, leftovers, monkeypatch
):
    import mono_quant.cli._safetensors as st
    import mono_quant.cli._sinks as sinks

    copies = 0

    def full(src, dst, size):
        nonlocal copies
        copies += 1
        dst.write(b"\0" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks, "header_reserve", lambda shard, metadata: 16)  # far too small
    monkeypatch.setattr(st, "_copy", full)
    err = fails_cleanly(["quantize", ckpt, "-o", out_dir / "q.safetensors"], 5, out_dir, leftovers)
    assert copies == 1 and "No space left on device [errno 28]" in err


def test_a_full_disk_during_force_keeps_the_previous_output(ckpt, out_dir, monkeypatch):
    target = out_dir / "q.safetensors"
    assert run("quantize", ckpt, "-o", target, "--quiet")[0] == 0
    before = target.read_bytes()
    _disk_full_after(monkeypatch, 2)
    assert run("quantize", ckpt, "-o", target, "--force", "--scheme", "symmetric")[0] == 5
    assert target.read_bytes() == before


def test_a_full_disk_in_a_sharded_run_leaves_no_folder(sharded, out_dir, leftovers, monkeypatch, unchanged):
    _disk_full_after(monkeypatch, 4)
    fails_cleanly(["quantize", sharded, "-o", out_dir / "q"], 5, out_dir, leftovers, unchanged(sharded))


# --- interruption --------------------------------------------------------------------------


def test_an_interrupt_mid_run_leaves_no_partial_output(ckpt, out_dir, leftovers, monkeypatch, unchanged):
    import mono_quant.cli._stream as stream

    real = stream.quantize_tensor
    calls = 0

    def interrupted(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "quantize_tensor", interrupted)
    code, _, err = run("quantize", ckpt, "-o", out_dir / "q.safetensors")
    assert code == 130 and err == "mono-quant: interrupted; nothing was written.\n"
    unchanged(ckpt)()
    assert list(out_dir.iterdir()) == []


_BLOCKING_RUN = textwrap.dedent(
    """
    import signal, sys, time
    # Ctrl-C as a terminal's foreground job gets it, even where the tests run with
    # SIGINT ignored (a background job or nohup), which the child would inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import mono_quant.cli._stream as stream
    real, calls = stream.quantize_tensor, []
    def blocking(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            print("READY", flush=True)
            time.sleep(120)
        return real(*args, **kwargs)
    stream.quantize_tensor = blocking
    from mono_quant.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_leaves_no_partial_output(sharded, out_dir, leftovers, unchanged, sig):
    check = unchanged(sharded)
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_RUN, "quantize", str(sharded), "-o", str(out_dir / "q")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        assert leftovers(out_dir) != []  # mid-run: the temporary output exists
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert list(out_dir.iterdir()) == []
    check()


def test_dequantize_refuses_a_checkpoint_that_is_not_native(ckpt, out_dir, leftovers, unchanged):
    err = fails_cleanly(
        ["dequantize", ckpt, "-o", out_dir / "d.safetensors"], 3, out_dir, leftovers, unchanged(ckpt)
    )
    assert "is not a mono-quant native checkpoint" in err
