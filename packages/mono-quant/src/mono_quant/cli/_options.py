"""What the command line and the Python API share without importing torch: exit codes, defaults, option names.

``mono-quant --help``, ``--version`` and usage errors use only this module
(and argparse), so they answer without the seconds ``import torch`` takes.
"""

from __future__ import annotations

import contextvars
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "DEFAULT_SCHEME",
    "DEFAULT_SQNR_THRESHOLD",
    "EXIT_CODES",
    "FORMATS",
    "MANIFEST",
    "NONDIVISIBLE",
    "NONFINITE",
    "cli_surface",
    "option",
]

DEFAULT_SCHEME = "asymmetric"
#: Tensors whose SQNR falls below this many dB are flagged in the report.
DEFAULT_SQNR_THRESHOLD = 10.0
#: Output formats of ``quantize_checkpoint`` / ``mono-quant quantize --format``.
FORMATS = ("native", "compressed-tensors")
#: ``--nonfinite`` / ``nonfinite=``: NaN/inf in a selected tensor.
NONFINITE = ("raise", "skip")
#: ``--nondivisible`` / ``nondivisible=``: a group size that does not divide a tensor's axis.
NONDIVISIBLE = ("raise", "pad", "skip")
#: The file in every folder mono-quant writes: what it wrote, so ``--force`` never removes anything else.
MANIFEST = ".mono-quant-output.json"

#: Exit code -> meaning, as documented in ``docs/cli.md``.
EXIT_CODES: dict[int, str] = {
    0: "success (also when stdout is closed early after the output was written, e.g. '| head')",
    1: "internal error (a bug in mono-quant; rerun with --verbose and report the traceback)",
    2: "usage error (a bad option or value, unknown scheme/dtype/profile, options that cannot work together)",
    3: "input error (checkpoint missing, truncated, corrupt, unsafe pickle, or newer format)",
    4: "quantization refused (a tensor cannot be quantized as asked, or the format cannot hold the result)",
    5: "output error (exists without --force, not ours to replace, is the input, not writable, disk full)",
    6: "plugin error (a scheme plugin broke the scheme contract or failed to load)",
    130: "interrupted (Ctrl-C or SIGTERM); no partial output is left",
    141: "stdout closed early by a reader (e.g. '| head') while listing (inspect, plugins)",
}

_CLI: contextvars.ContextVar[bool] = contextvars.ContextVar("mono_quant_cli_surface", default=False)


@contextmanager
def cli_surface() -> Iterator[None]:
    """Within this block, :func:`option` names command-line flags instead of Python keywords."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def option(name: str, value: object = True) -> str:
    """How the user sets ``name`` to ``value``: ``--force`` on the command line, ``force=True`` in Python.

    ``value=None`` names the option alone. Error messages call this, so each
    tells the reader what *they* can type.

    >>> option("force"), option("group_size", None)
    ('force=True', 'group_size')
    >>> option("nondivisible", "pad")
    "nondivisible='pad'"
    >>> with cli_surface():
    ...     option("force"), option("group_size", None), option("include", "layers.*")
    ('--force', '--group-size', "--include 'layers.*'")
    """
    if _CLI.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is True or value is None else f"{flag} {shlex.quote(str(value))}"
    return name if value is None else f"{name}={value!r}"
