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
