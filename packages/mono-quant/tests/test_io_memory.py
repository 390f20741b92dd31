"""Reading and writing at the cost of a few tensors: no file mapped in memory, every byte written once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import mono_quant.cli._safetensors as st
from mono_quant.cli import load_quantized, quantize_checkpoint, quantize_state_dict
from mono_quant.core import list_schemes

#: Runs the command in argv, then prints its exit status and peak RSS (ru_maxrss). A child's
#: ru_maxrss also counts the memory of the process that spawned it, so this launcher, which
#: imports nothing heavy, stands between the test process (torch loaded) and the one measured.
_LAUNCH = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.executable, [sys.executable, *sys.argv[1:]], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
)
#: ru_maxrss is in KiB on Linux, in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def _peak_rss(*argv: object) -> int:
    """Peak resident memory, in bytes, of ``python *argv``; fails if it does not exit with 0."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    code, rss = done.stdout.split()
    assert code == "0", done.stderr
    return int(rss) * _RSS_UNIT


@pytest.mark.skipif(not hasattr(os, "wait4") or not hasattr(os, "posix_spawn"), reason="needs wait4")
def test_quantizing_needs_memory_for_a_few_tensors_not_for_the_whole_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {f"layers.{i}.weight": torch.randn(1024, 2048, generator=g) for i in range(24)}
    largest = 1024 * 2048 * 4  # 8 MiB; the file holds 24 of them, 192 MiB: 8 times the bound below
    save_file(tensors, tmp_path / "big.safetensors")
    del tensors
    save_file({"w": torch.randn(64, 64, generator=g)}, tmp_path / "tiny.safetensors")

    def quantize(name: str) -> int:
        return _peak_rss(
            "-m", "mono_quant", "quantize", tmp_path / f"{name}.safetensors", "-o", tmp_path / f"{name}-q",
            "--scheme", "asymmetric", "--dtype", "int8", "--granularity", "per-channel", "--quiet",
        )  # fmt: skip

    # The baseline: the same command on a tiny file (interpreter, torch, plugins, one quantization).
    baseline = quantize("tiny")
    peak = quantize("big")
    assert peak - baseline <= 3 * largest, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    assert set(load_file(tmp_path / "big-q")) >= {"layers.23.weight::codes"}


def test_the_room_left_for_the_header_fits_every_installed_scheme(ckpt, tmp_path, monkeypatch):
    def no_copy(*args: object) -> None:
        raise AssertionError("the header outgrew the room left for it: the data was copied")

    monkeypatch.setattr(st, "_copy", no_copy)
    monkeypatch.setattr(st, "MAX_SLACK", st.MAX_HEADER)  # any padding is fine here: only the room is tested
    state_dict = load_file(ckpt)
    for scheme in list_schemes():
        for fmt in ("native", "compressed-tensors"):
            out = tmp_path / f"{scheme}-{fmt}"
            quantize_checkpoint(ckpt, out, scheme=scheme, format=fmt, exclude=["*conv*"])
            if fmt == "native":
                expected = quantize_state_dict(state_dict, scheme=scheme, exclude=["*conv*"])
                assert load_quantized(out).equals(expected), scheme
            else:
                assert load_file(out / "model.safetensors"), scheme
