"""Ctrl-C and SIGTERM at any moment of a run: one line, exit 130, and the truth about what was written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mono_quant.cli import load_quantized
from mono_quant.cli._interrupt import NOTHING_WRITTEN

# Runs the real console entry point, with torch's import slowed down by an import hook,
# so a signal can be sent while torch is being imported (deterministically).
_SLOW_TORCH = textwrap.dedent(
    """
    import importlib.util, sys, time
    signal_file, pause = sys.argv[1], float(sys.argv[2])

    class SlowTorch:
        def find_spec(self, name, path, target=None):
            if name != "torch":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec("torch")
            real = spec.loader.exec_module

            def exec_module(module):
                open(signal_file, "w").close()
                time.sleep(pause)
                real(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, SlowTorch())
    sys.argv = ["mono-quant", *sys.argv[3:]]
    from mono_quant.cli._console import run
    run()
    """
)

# Runs the console entry point and blocks while the report is printed (after publishing).
_SLOW_REPORT = textwrap.dedent(
    """
    import sys, time
    signal_file = sys.argv[1]
    import mono_quant.cli._report as report
    def render(self, **kwargs):
        open(signal_file, "w").close()
        time.sleep(60)
    report.Report.render = render
    sys.argv = ["mono-quant", *sys.argv[2:]]
    from mono_quant.cli._console import run
    run()
    """
)


def _start(script, flag, *argv):
    env = {**os.environ, "CI": "1"}
    # Ctrl-C reaches a terminal's foreground job even where these tests run with SIGINT ignored.
    return subprocess.Popen(
        [sys.executable, "-c", script, str(flag), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(flag, proc):
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("pause", [5.0, 0.0], ids=["in-the-hook", "inside-torch-init"])
def test_a_signal_while_torch_imports_gives_one_line_and_130(ckpt, tmp_path, sig, pause):
    flag, out = tmp_path / "importing", tmp_path / "q.safetensors"
    proc = _start(_SLOW_TORCH, flag, pause, "quantize", ckpt, "-o", out)
    try:
        _wait_for(flag, proc)
        if not pause:
            time.sleep(0.2)  # torch's own module code is running now
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, stdout, stderr) == (130, "", NOTHING_WRITTEN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["importing", "in"]


def test_a_signal_after_the_output_was_published_says_it_stays(ckpt, tmp_path):
    flag, out = tmp_path / "printing", tmp_path / "q.safetensors"
    proc = _start(_SLOW_REPORT, flag, "quantize", ckpt, "-o", out)
    try:
        _wait_for(flag, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert stderr == "mono-quant: interrupted after the output was complete; it stays as written.\n"
    assert load_quantized(out).quantized_names
