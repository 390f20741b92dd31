"""Checkpoint-level errors and the exit code each kind of failure maps to."""

from __future__ import annotations

from mono_quant.cli._options import EXIT_CODES
from mono_quant.core import (
    AxisError,
    CastOverflowError,
    EmptyTensorError,
    GroupSizeError,
    InputDtypeError,
    MonoQuantError,
    NonFiniteError,
    ObserverContractError,
    ObserverError,
    PluginLoadError,
    QParamsError,
    RangeOverflowError,
    RegistryConflictError,
    SchemeContractError,
)

__all__ = [
    "EXIT_CODES",
    "CheckpointError",
    "InputError",
    "LeftoverWarning",
    "OutputError",
    "RefusedError",
    "TensorError",
    "UsageError",
    "exit_code_for",
]


class CheckpointError(MonoQuantError):
    """Base class of the errors raised while reading, quantizing or writing a checkpoint."""


class UsageError(CheckpointError):
    """Options that are wrong whatever the input: a bad value, or options that cannot work together."""


class InputError(CheckpointError):
    """The input checkpoint cannot be read: missing, truncated, corrupt, unsafe or too new."""


class RefusedError(CheckpointError):
    """Valid options that this checkpoint cannot be quantized with (e.g. the format cannot hold it)."""


class TensorError(RefusedError):
    """One tensor cannot be quantized as asked (its name is in the message)."""


class OutputError(CheckpointError):
    """The output cannot be written: it exists, is not ours to replace, is the input, or the disk is full."""


class LeftoverWarning(UserWarning):
    """A temporary entry of an interrupted mono-quant run was found and removed."""


_REFUSED = (
    AxisError,
    CastOverflowError,
    EmptyTensorError,
    GroupSizeError,
    InputDtypeError,
    NonFiniteError,
    ObserverError,
    QParamsError,
    RangeOverflowError,
)


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
    if isinstance(exc, (RefusedError, *_REFUSED)):
        return 4
    if isinstance(exc, (SchemeContractError, ObserverContractError, PluginLoadError, RegistryConflictError)):
        return 6
    if isinstance(exc, MonoQuantError):  # UsageError, unknown names, unsupported options
        return 2
    return 1
