"""mono-quant: quantize checkpoints from the command line or Python, with the installed scheme plugins."""

from __future__ import annotations

import importlib.metadata as _md

from mono_quant.cli._api import FORMATS, quantize_checkpoint, quantize_model, quantize_state_dict
from mono_quant.cli._checkpoint import QuantizedCheckpoint
from mono_quant.cli._cli import main
from mono_quant.cli._errors import (
    EXIT_CODES,
    CheckpointError,
    InputError,
    OutputError,
    TensorError,
    UsageError,
    exit_code_for,
)
from mono_quant.cli._formats.native import FORMAT_VERSION
from mono_quant.cli._inspect import inspect_checkpoint
from mono_quant.cli._load import dequantize_checkpoint, dequantize_state_dict, load_quantized, save_quantized
from mono_quant.cli._report import Report, TensorReport
from mono_quant.cli._select import DEFAULT_MODULE_TYPES
from mono_quant.cli._tensor import QuantizedTensor

try:
    __version__ = _md.version("mono-quant")
except _md.PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MODULE_TYPES",
    "EXIT_CODES",
    "FORMATS",
    "FORMAT_VERSION",
    "CheckpointError",
    "InputError",
    "OutputError",
    "QuantizedCheckpoint",
    "QuantizedTensor",
    "Report",
    "TensorError",
    "TensorReport",
    "UsageError",
    "__version__",
    "dequantize_checkpoint",
    "dequantize_state_dict",
    "exit_code_for",
    "inspect_checkpoint",
    "load_quantized",
    "main",
    "quantize_checkpoint",
    "quantize_model",
    "quantize_state_dict",
    "save_quantized",
]
