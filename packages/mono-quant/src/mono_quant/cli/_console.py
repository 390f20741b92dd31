"""The ``mono-quant`` console script (and ``python -m mono_quant``): Ctrl-C handled from its first line."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

__all__ = ["run"]


def run() -> NoReturn:
    """Run the command line and exit with its code.

    Ctrl-C or SIGTERM while the modules load exits at once with one line and
    130 (see ``mono_quant.cli._interrupt``). At the end the interpreter is not
    torn down (torch's exit handlers would take time and could be interrupted
    into a traceback): the streams are flushed and the process exits.
    """
    from mono_quant.cli._interrupt import exit_now

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, exit_now())
    from mono_quant.cli._cli import main

    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
