"""A one-line progress bar on stderr: tensors done, bytes, ETA; silent when not on a terminal."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from mono_quant.cli._report import human_bytes

__all__ = ["Progress", "progress_wanted"]


def progress_wanted(quiet: bool, stream: TextIO | None = None) -> bool:
    """True when a bar helps: a terminal, not CI, not ``--quiet``.

    >>> progress_wanted(quiet=True)
    False
    """
    s = stream if stream is not None else sys.stderr
    if quiet or os.environ.get("CI") or os.environ.get("MONO_QUANT_NO_PROGRESS"):
        return False
    isatty = getattr(s, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Counts tensors and bytes; draws at most ten times a second when ``enabled``."""

    def __init__(
        self, total_tensors: int, total_bytes: int, *, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.total_tensors = total_tensors
        self.total_bytes = max(total_bytes, 1)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done_tensors = 0
        self.done_bytes = 0
        self._start = time.monotonic()
        self._last = 0.0

    def update(self, nbytes: int) -> None:
        """One more tensor of ``nbytes`` is done."""
        self.done_tensors += 1
        self.done_bytes += nbytes
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done_tensors == self.total_tensors):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done_bytes / self.total_bytes, 1.0)
        width = 24
        filled = int(frac * width)
        elapsed = now - self._start
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done_tensors}/{self.total_tensors} tensors  "
            f"{human_bytes(self.done_bytes)}/{human_bytes(self.total_bytes)}  ETA {eta:4.0f}s "
        )
        self.stream.flush()

    def close(self) -> None:
        """End the line the bar was drawn on."""
        if self.enabled and self.done_tensors:
            self.stream.write("\n")
            self.stream.flush()
