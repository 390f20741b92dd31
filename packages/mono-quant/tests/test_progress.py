from __future__ import annotations

import io

from mono_quant.cli._progress import Progress, progress_wanted


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_tensors_bytes_and_eta_and_ends_its_line():
    stream = Tty()
    bar = Progress(2, 2048, enabled=True, stream=stream)
    bar.update(1024)
    bar.update(1024)
    bar.close()
    text = stream.getvalue()
    assert "\r[" in text and "2/2 tensors" in text and "2.0 KiB/2.0 KiB" in text and "ETA" in text
    assert text.endswith("\n")


def test_a_disabled_bar_writes_nothing():
    stream = Tty()
    bar = Progress(1, 10, enabled=False, stream=stream)
    bar.update(10)
    bar.close()
    assert stream.getvalue() == ""


def test_the_bar_is_wanted_only_on_a_terminal_outside_ci_without_quiet(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MONO_QUANT_NO_PROGRESS", raising=False)
    assert progress_wanted(False, Tty()) is True
    assert progress_wanted(True, Tty()) is False
    assert progress_wanted(False, io.StringIO()) is False
    monkeypatch.setenv("CI", "true")
    assert progress_wanted(False, Tty()) is False


def test_dequantize_counts_the_tensors_and_bytes_it_writes(tmp_path, ckpt, capsys):
    from safetensors.torch import load_file

    from mono_quant.cli import dequantize_checkpoint, quantize_checkpoint

    quantize_checkpoint(ckpt, tmp_path / "q.safetensors", scheme="int4-symmetric", nondivisible="skip")
    capsys.readouterr()
    dequantize_checkpoint(tmp_path / "q.safetensors", tmp_path / "d.safetensors", progress=True)
    written = load_file(tmp_path / "d.safetensors")
    total = sum(t.numel() * t.element_size() for t in written.values())
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    n = len(written)
    assert f"{n}/{n} tensors" in last, last
    assert last.count(f"{total / 1024:.1f} KiB") == 2, (last, total)
