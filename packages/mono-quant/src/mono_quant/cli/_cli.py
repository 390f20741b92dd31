"""The ``mono-quant`` command line: a thin argparse layer over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import io
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

# Only light modules at import time: --help, --version and usage errors never import torch.
from mono_quant.cli import _commands as commands
from mono_quant.cli._interrupt import NOTHING_WRITTEN, cli_signals
from mono_quant.cli._options import (
    DEFAULT_SCHEME,
    DEFAULT_SQNR_THRESHOLD,
    EXIT_CODES,
    FORMATS,
    NONDIVISIBLE,
    NONFINITE,
    cli_surface,
)

__all__ = ["build_parser", "main"]

_OUT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _version() -> str:
    def of(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "0+unknown"

    return f"mono-quant {of('mono-quant')} (mono-quant-core {of('mono-quant-core')})"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _writes_output(p: argparse.ArgumentParser, force: str, *, quiet: str) -> None:
    """``-f/--force`` and ``-q/--quiet``, the options of every command that writes an output."""
    what = f"{force}: a file, or a folder mono-quant wrote"
    p.add_argument("-f", "--force", action="store_true", help=what)
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mono-quant`` (documented in ``docs/cli.md``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on error, print the full traceback",
    )
    parser = argparse.ArgumentParser(
        prog="mono-quant",
        description="Quantize PyTorch checkpoints with the installed mono-quant scheme plugins.",
        epilog="exit codes:\n" + "\n".join(f"  {k:<4}{v}" for k, v in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true", help="on error, print the full traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", parents=[common], help="list installed scheme plugins, schemes and dtypes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=commands.plugins, pipe_code=141)

    q = sub.add_parser("quantize", parents=[common], help="quantize a checkpoint")
    q.add_argument(
        "input", metavar="INPUT", help=".safetensors file, checkpoint folder, or .pt/.bin state dict"
    )
    q.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output file (single-file input, native) or folder (folder input, or compressed-tensors)",
    )
    q.add_argument(
        "--scheme", default=DEFAULT_SCHEME, help=f"scheme name (default {DEFAULT_SCHEME}); see 'plugins'"
    )
    q.add_argument("--dtype", help="quant dtype (default: the scheme's default, int8 or int4)")
    q.add_argument(
        "--granularity",
        choices=("per-tensor", "per-channel", "per-group"),
        help="default: per-group for the int4 schemes (or with --group-size), else per-channel",
    )
    q.add_argument("--axis", type=int, help="channel axis (default 0) or group axis (default -1)")
    q.add_argument("--group-size", type=_positive_int, help="elements per group (default 128)")
    q.add_argument("--profile", help="numerical profile of the scheme, e.g. default or torchao")
    q.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="quantize only 2+-D floating tensors whose name matches (repeatable)",
    )
    q.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="never quantize tensors whose name matches (repeatable)",
    )
    q.add_argument("--format", default="native", choices=FORMATS, help="output format (default native)")
    q.add_argument(
        "--nonfinite",
        default="raise",
        choices=NONFINITE,
        help="NaN/inf in a selected tensor: stop (default) or copy it unquantized",
    )
    q.add_argument(
        "--nondivisible",
        default="raise",
        choices=NONDIVISIBLE,
        help="a group size that does not divide a tensor's axis: stop (default), pad the last group "
        "(if the scheme accepts it), or copy the tensor unquantized",
    )
    q.add_argument(
        "--sqnr-threshold",
        type=float,
        default=DEFAULT_SQNR_THRESHOLD,
        metavar="DB",
        help=f"flag tensors below this SQNR (default {DEFAULT_SQNR_THRESHOLD:g} dB)",
    )
    q.add_argument("--report", metavar="FILE.json", help="also write the report as JSON")
    q.add_argument(
        "--config",
        metavar="CONFIG.json",
        help="the model's config.json, for a single-file INPUT (default: the config.json beside it, for "
        "--format compressed-tensors)",
    )
    q.add_argument(
        "--activations",
        metavar="dynamic|FILE",
        help="W8A8 for compressed-tensors: 'dynamic' (per-token, at run time) or the static activation "
        "qparams written by 'mono-quant calibrate'",
    )
    q.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="split a sharded input over N local processes (whole files each), then merge",
    )
    q.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="threads that work through each tensor (default: torch's thread count, "
        "OMP_NUM_THREADS or the cores; --jobs share them)",
    )
    q.add_argument(
        "--num-shards",
        type=_positive_int,
        metavar="N",
        help="this run is one of N jobs (Slurm array, Ray, ...): quantize its share of the input's files "
        "into OUTPUT.parts/; join them with merge-index",
    )
    q.add_argument("--shard-index", type=int, metavar="I", help="which of the N jobs this is (0 to N-1)")
    q.add_argument("--all-tensors", action="store_true", help="list copied tensors in the table too")
    _writes_output(q, "replace an existing output (and report)", quiet="no progress bar, no table")
    q.set_defaults(func=commands.quantize, pipe_code=0)

    d = sub.add_parser("dequantize", parents=[common], help="turn a native checkpoint back into floats")
    d.add_argument("input", metavar="QUANTIZED")
    d.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    d.add_argument(
        "--dtype",
        default="original",
        choices=("original", *_OUT_DTYPES),
        help="dtype of every floating tensor of the output (default: each tensor's original dtype)",
    )
    _writes_output(d, "replace an existing output", quiet="no progress bar, no summary")
    d.set_defaults(func=commands.dequantize, pipe_code=0)

    c = sub.add_parser(
        "calibrate",
        parents=[common],
        help="activation qparams of a Hugging Face text model, for W8A8 (quantize --activations FILE)",
    )
    c.add_argument("input", metavar="MODEL_FOLDER")
    c.add_argument("--data", required=True, metavar="TEXTS", help=".txt (a text per line) or .jsonl ('text')")
    c.add_argument("-o", "--output", required=True, metavar="ACTIVATIONS.safetensors")
    c.add_argument(
        "--observer", default="minmax", help="an installed observer (see 'plugins'); default minmax"
    )
    c.add_argument(
        "--scheme", default="symmetric", help="scheme of the activation qparams (default symmetric)"
    )
    c.add_argument("--dtype", default="int8", help="dtype of the activation qparams (default int8)")
    c.add_argument("--batch-size", type=_positive_int, default=8, metavar="N")
    c.add_argument("--max-length", type=_positive_int, default=128, metavar="TOKENS")
    c.add_argument("--max-samples", type=_positive_int, metavar="N", help="use the first N texts only")
    _writes_output(c, "replace an existing output", quiet="no progress bar, no summary")
    c.set_defaults(func=commands.calibrate, pipe_code=0)

    x = sub.add_parser(
        "export-onnx",
        parents=[common],
        help="a Hugging Face model folder as a QDQ ONNX file (int8 weights, calibrated activations)",
    )
    x.add_argument("input", metavar="MODEL_FOLDER")
    x.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    x.add_argument(
        "--activations",
        metavar="FILE",
        help="input activation qparams from 'mono-quant calibrate' (recommended: --scheme asymmetric "
        "--dtype uint8 there); without it only the weights are quantized",
    )
    x.add_argument("--scheme", default="symmetric", help="weight scheme (default symmetric)")
    x.add_argument("--dtype", default="int8", help="weight dtype (default int8)")
    x.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="keep these weights float")
    x.add_argument("--opset", type=_positive_int, default=18)
    x.add_argument(
        "--store-int8-as",
        choices=("uint8", "int8"),
        default="uint8",
        help="int8 weight codes in the file: uint8 code + 128 (default; the same floats, and exact in "
        "onnxruntime's integer kernels on every x86 CPU) or int8 as computed (for TensorRT-like runtimes)",
    )
    x.add_argument("--json", action="store_true", help="print the report as JSON")
    _writes_output(x, "replace an existing output", quiet="no report")
    x.set_defaults(func=commands.export_onnx, pipe_code=0)

    m = sub.add_parser(
        "merge-index", parents=[common], help="join the parts of a split run (--num-shards) into OUTPUT"
    )
    m.add_argument(
        "output", metavar="OUTPUT", help="the -o OUTPUT the jobs were given (parts in OUTPUT.parts/)"
    )
    m.add_argument("--report", metavar="FILE.json", help="also write the whole run's report as JSON")
    m.add_argument("--keep-parts", action="store_true", help="leave OUTPUT.parts/ in place")
    _writes_output(m, "replace an existing output (and report)", quiet="no table")
    m.set_defaults(func=commands.merge, pipe_code=0)

    v = sub.add_parser(
        "verify",
        parents=[common],
        help="load a compressed-tensors output with transformers and check it equals mono-quant's dequantize",
    )
    v.add_argument("input", metavar="OUTPUT_FOLDER")
    v.add_argument(
        "--reference", metavar="MODEL_FOLDER", help="the original model: per-module SQNR and output cosine"
    )
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.set_defaults(func=commands.verify, pipe_code=141)

    i = sub.add_parser("inspect", parents=[common], help="show what a checkpoint holds")
    i.add_argument("input", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=commands.inspect, pipe_code=141)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Diagnostics(io.TextIOBase):
    """stderr for diagnostics: a reader that went away (a closed pipe) must not stop the work."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self.closed_by_reader = True
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_by_reader = True

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())


def _silence_stdout() -> None:
    """After a reader closed stdout, point it at /dev/null so the interpreter's final flush stays quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``mono-quant`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Errors print one line (``mono-quant: error: ...``) to stderr; ``--verbose``
    adds the traceback. Ctrl-C and SIGTERM stop the run at any moment (torch's
    import included), leave no partial output, print one line and return 130.
    A reader that closes stdout early (``| head``) ends the run quietly: 0 once
    the output was written (quantize, dequantize), 141 for a listing.

    >>> main(["plugins"]) == 0  # doctest: +ELLIPSIS
    mono-quant-core ...
    True
    """
    out = stdout if stdout is not None else sys.stdout
    err = _Diagnostics(stderr if stderr is not None else sys.stderr)
    parser = build_parser()
    try:
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            out.flush()
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BrokenPipeError:  # --help | head
        if out is sys.stdout:
            _silence_stdout()
        return 141
    if not getattr(args, "command", None):
        parser.print_help(err)
        return 2
    verbose = bool(getattr(args, "verbose", False))

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        err.write(f"mono-quant: warning: {_one_line(str(message))}\n")

    try:
        with cli_signals(), cli_surface(), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # Each warning is one line on this run's stderr, whatever filters the host process set.
            warnings.showwarning = show
            warnings.simplefilter("default")
            code: int = args.func(args, out)
            out.flush()
        return code
    except BrokenPipeError:  # stdout closed by its reader: only results are written there
        if out is sys.stdout:
            _silence_stdout()
        return int(args.pipe_code)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI turns every failure into a line and a code
        code = 130 if isinstance(exc, KeyboardInterrupt) else _exit_code(exc)
        if verbose:
            traceback.print_exc(file=err)
        if isinstance(exc, KeyboardInterrupt):
            err.write(NOTHING_WRITTEN)
        elif code == 1:
            err.write(
                f"mono-quant: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                f"(a bug: rerun with --verbose and report the traceback)\n"
            )
        else:
            err.write(f"mono-quant: error: {_one_line(str(exc))}\n")
        err.flush()
        return code


def _exit_code(exc: BaseException) -> int:
    try:
        from mono_quant.cli._errors import exit_code_for
    except Exception:  # noqa: BLE001 - core itself failed to import: that is the internal error
        return 1
    return exit_code_for(exc)
