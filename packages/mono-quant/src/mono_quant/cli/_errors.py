"""Checkpoint-level errors and the exit code each kind of failure maps to."""

from __future__ import annotations

from mono_quant.core import (
    AxisError,
    EmptyTensorError,
    GroupSizeError,
    InputDtypeError,
    MonoQuantError,
    NonFiniteError,
    PluginLoadError,
    QParamsError,
    SchemeContractError,
)

__all__ = [
    "EXIT_CODES",
    "CheckpointError",
    "InputError",
    "OutputError",
    "TensorError",
    "UsageError",
    "exit_code_for",
]


class CheckpointError(MonoQuantError):
    """Base class of the errors raised while reading, quantizing or writing a checkpoint."""


class UsageError(CheckpointError):
    """Options that cannot work together, or that the chosen output format cannot hold."""


class InputError(CheckpointError):
    """The input checkpoint cannot be read: missing, truncated, corrupt, unsafe or too new."""


class TensorError(CheckpointError):
    """One tensor cannot be quantized as asked (its name is in the message)."""


class OutputError(CheckpointError):
    """The output cannot be written: it exists, is the input, is not writable, or the disk is full."""


#: Exit code -> meaning, as documented in ``docs/cli.md``.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug in mono-quant; rerun with --verbose and report the traceback)",
    2: "usage or configuration error (bad option, unknown scheme/dtype/profile, unsupported combination)",
    3: "input error (checkpoint missing, truncated, corrupt, unsafe pickle, or newer format)",
    4: "tensor error (non-finite values, group size does not fit, ...; the tensor is named)",
    5: "output error (exists without --force, is the input, not writable, disk full)",
    6: "plugin error (a scheme plugin broke the scheme contract or failed to load)",
    130: "interrupted (Ctrl-C or SIGTERM); no partial output is left",
}

_TENSOR_ERRORS = (AxisError, EmptyTensorError, GroupSizeError, InputDtypeError, NonFiniteError, QParamsError)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for ``exc`` (see :data:`EXIT_CODES`).

    >>> exit_code_for(OutputError("exists"))
    5
    >>> exit_code_for(KeyboardInterrupt())
    130
    """
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, InputError):
        return 3
    if isinstance(exc, OutputError):
        return 5
    if isinstance(exc, (TensorError, *_TENSOR_ERRORS)):
        return 4
    if isinstance(exc, (SchemeContractError, PluginLoadError)):
        return 6
    if isinstance(exc, MonoQuantError):
        return 2
    return 1
