"""Ctrl-C and SIGTERM on the command line: one line and exit 130 at any moment, never a traceback or a lie.

A run has three phases, and a signal means something different in each:

1. **Before any output exists** (start-up, ``import torch``, plugin loading,
   reading headers): the process exits at once. Raising ``KeyboardInterrupt``
   there would land inside third-party imports, which may swallow it or be left
   half-initialised; exiting is safe because nothing was written yet.
2. **While writing** (inside :func:`~mono_quant.cli._atomic.atomic_outputs`):
   ``KeyboardInterrupt`` is raised, so the temporary entries are removed and
   nothing partial is left.
3. **After publishing**: the output is complete; the process exits at once and
   says so, instead of reporting "nothing was written".

Only :func:`cli_signals` (used by ``mono-quant``'s ``main``) installs these
handlers; library callers keep their own.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["NOTHING_WRITTEN", "cli_signals", "exit_now", "work_ended", "work_starts"]

Handler = Callable[[int, FrameType | None], None]

NOTHING_WRITTEN = "mono-quant: interrupted; nothing was written.\n"
_ALREADY_WRITTEN = "mono-quant: interrupted after the output was complete; it stays as written.\n"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = False


def exit_now(message: str = NOTHING_WRITTEN) -> Handler:
    """A handler that writes ``message`` to stderr and exits with 130 at once (no clean-up runs)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            os.write(2, message.encode())
        finally:
            os._exit(130)

    return handler


def _install(handler: Handler) -> None:
    for sig in _SIGNALS:
        signal.signal(sig, handler)


@contextmanager
def cli_signals() -> Iterator[None]:
    """Install the phase handlers for one command-line run; restore the previous ones after it.

    Outside the main thread (where Python cannot set handlers) this does nothing.
    """
    global _active
    try:
        previous = [signal.signal(sig, exit_now()) for sig in _SIGNALS]
    except ValueError:  # not the main thread
        yield
        return
    _active = True
    try:
        yield
    finally:
        _active = False
        for sig, handler in zip(_SIGNALS, previous, strict=True):
            signal.signal(sig, handler)


def work_starts() -> None:
    """Output is about to be created: from now on a signal raises ``KeyboardInterrupt`` (clean-up runs)."""
    if _active:
        _install(signal.default_int_handler)  # raises KeyboardInterrupt, for SIGTERM too


def work_ended(*, published: bool) -> None:
    """The outputs are published (or were all removed): from now on a signal exits at once, saying which."""
    if _active:
        _install(exit_now(_ALREADY_WRITTEN if published else NOTHING_WRITTEN))
