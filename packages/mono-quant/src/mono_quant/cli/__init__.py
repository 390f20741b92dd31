"""mono-quant: quantize checkpoints from the command line or Python, with the installed scheme plugins.

Importing this package is cheap: the names below are loaded on first use, so
``mono-quant --help`` answers without importing torch.
"""

from __future__ import annotations

from mono_quant.cli._options import EXIT_CODES, FORMATS

# Not ``typing.TYPE_CHECKING``: importing typing alone costs more than the rest of this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mono_quant.cli._api import quantize_checkpoint, quantize_model, quantize_state_dict
    from mono_quant.cli._checkpoint import QuantizedCheckpoint
    from mono_quant.cli._cli import main
    from mono_quant.cli._errors import (
        CheckpointError,
        InputError,
        LeftoverWarning,
        OutputError,
        RefusedError,
        TensorError,
        UsageError,
        exit_code_for,
    )
    from mono_quant.cli._formats.native import FORMAT_VERSION
    from mono_quant.cli._inspect import inspect_checkpoint
    from mono_quant.cli._load import (
        dequantize_checkpoint,
        dequantize_state_dict,
        load_quantized,
        save_quantized,
    )
    from mono_quant.cli._onnx import export_onnx
    from mono_quant.cli._onnx_report import OnnxExport, OnnxWeight
    from mono_quant.cli._report import Report, TensorReport
    from mono_quant.cli._select import DEFAULT_MODULE_TYPES
    from mono_quant.cli._split import merge_index
    from mono_quant.cli._tensor import QuantizedTensor
    from mono_quant.cli._verify import VerifyReport, verify_checkpoint

if TYPE_CHECKING:
    __version__: str

#: Public name -> the private module that defines it (imported on first access).
_LAZY = {
    "main": "_cli",
    "quantize_checkpoint": "_api",
    "quantize_model": "_api",
    "quantize_state_dict": "_api",
    "QuantizedCheckpoint": "_checkpoint",
    "CheckpointError": "_errors",
    "InputError": "_errors",
    "LeftoverWarning": "_errors",
    "OutputError": "_errors",
    "RefusedError": "_errors",
    "TensorError": "_errors",
    "UsageError": "_errors",
    "exit_code_for": "_errors",
    "FORMAT_VERSION": "_formats.native",
    "inspect_checkpoint": "_inspect",
    "export_onnx": "_onnx",
    "OnnxExport": "_onnx_report",
    "OnnxWeight": "_onnx_report",
    "dequantize_checkpoint": "_load",
    "dequantize_state_dict": "_load",
    "load_quantized": "_load",
    "save_quantized": "_load",
    "Report": "_report",
    "TensorReport": "_report",
    "DEFAULT_MODULE_TYPES": "_select",
    "merge_index": "_split",
    "QuantizedTensor": "_tensor",
    "VerifyReport": "_verify",
    "verify_checkpoint": "_verify",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "__version__":
        import importlib.metadata as md

        try:
            value: Any = md.version("mono-quant")
        except md.PackageNotFoundError:  # running from a source tree without metadata
            value = "0+unknown"
    elif name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_MODULE_TYPES",
    "EXIT_CODES",
    "FORMATS",
    "FORMAT_VERSION",
    "CheckpointError",
    "InputError",
    "LeftoverWarning",
    "OnnxExport",
    "OnnxWeight",
    "OutputError",
    "QuantizedCheckpoint",
    "QuantizedTensor",
    "RefusedError",
    "Report",
    "TensorError",
    "TensorReport",
    "UsageError",
    "VerifyReport",
    "__version__",
    "dequantize_checkpoint",
    "dequantize_state_dict",
    "exit_code_for",
    "export_onnx",
    "inspect_checkpoint",
    "load_quantized",
    "main",
    "merge_index",
    "quantize_checkpoint",
    "quantize_model",
    "quantize_state_dict",
    "save_quantized",
    "verify_checkpoint",
]
