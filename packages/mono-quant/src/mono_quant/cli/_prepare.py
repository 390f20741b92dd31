"""Everything a run checks from its options and the input's headers, before it writes anything.

The model config and layout in play, the model-aware selection, W8A8's
activations, what the output format can hold: each refused here, with the
tensor or module named, before any tensor is read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Literal

import torch

from mono_quant.cli._errors import InputError, RefusedError, TensorError, UsageError
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats import compressed_tensors_float as ctf
from mono_quant.cli._formats import native
from mono_quant.cli._model import ModelLayout, model_layout, read_config
from mono_quant.cli._options import option
from mono_quant.cli._plan import Plan
from mono_quant.cli._select import Selection
from mono_quant.cli._sinks import Model
from mono_quant.cli._source import Source
from mono_quant.core import (
    COMPRESSED_TENSORS_PROFILE,
    GranuleLayout,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
)

__all__ = ["activations_of", "model_of", "model_selection", "preflight", "profile_notes", "read_activations"]


def activations_of(
    activations: str | Path | None, source: Source, plan: Plan, fmt: str
) -> dict[str, QParams] | Literal["dynamic"] | None:
    """W8A8: each quantized module's input activations ("dynamic", or ``mono-quant calibrate``'s)."""
    if activations is None:
        return None
    if fmt != ct.FORMAT:
        raise UsageError(
            f"{option('activations', None)} writes W8A8 for a runtime: it needs "
            f"{option('format', 'compressed-tensors')}."
        )
    qd, gran = plan.dtype, plan.granularity
    if qd.is_float_code and ctf.format_for(qd) == ctf.FLOAT_QUANTIZED:
        # FP8 weights with FP8 activations: compressed-tensors' FP8_DYNAMIC (per-token, at run time).
        if str(activations) != "dynamic":
            raise RefusedError(
                f"FP8 weights take {option('activations', 'dynamic')} (FP8 per token, computed by the "
                f"runtime); static FP8 activation scales are not written yet."
            )
        return "dynamic"
    if qd.kind != "int" or qd.bits != 8 or not isinstance(gran, (PerChannel, PerTensor)):
        raise RefusedError(
            f"W8A8 (compressed-tensors int-quantized) holds 8-bit integer weights per channel or per "
            f"tensor (or FP8 E4M3 weights with dynamic FP8 activations); got dtype {qd.name!r}, {gran}. "
            f"Use {option('dtype', 'int8')} {option('granularity', 'per-channel')}."
        )
    if str(activations) == "dynamic":
        return "dynamic"
    path = Path(activations)
    inputs = read_activations(path)
    for info in source.infos:
        if not plan.selection.decide(info.name, info.dtype, info.shape)[0]:
            continue
        module = info.name.removesuffix(".weight")
        qp = inputs.get(module)
        if qp is None:
            raise RefusedError(
                f"{path} has no input activation qparams for {module!r}, whose weight is quantized: "
                f"calibrate the same modules, or leave it out ({option('exclude', info.name)})."
            )
        if qp.dtype != "int8" or not isinstance(qp.granularity, PerTensor):
            raise RefusedError(
                f"the input activations of {module!r} are {qp.dtype} {qp.granularity}; compressed-tensors "
                f"W8A8 holds int8 per-tensor activations. Calibrate with --dtype int8 (per tensor)."
            )
    return inputs


def read_activations(path: Path) -> dict[str, QParams]:
    """The input activation QParams, by module name, of a file ``mono-quant calibrate`` wrote."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from mono_quant.observers import CalibrationResult

    if not path.is_file():
        raise InputError(f"the activations file {path} does not exist; write it with mono-quant calibrate.")
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
    try:
        table = CalibrationResult.read_qparams(load_file(str(path)), metadata)
    except Exception as exc:
        raise InputError(f"{path} does not hold activation qparams from mono-quant calibrate: {exc}") from exc
    return {key.rsplit(":", 1)[0]: qp for key, qp in table.items() if key.endswith(":input")}


def profile_notes(plan: Plan, source: Source) -> list[str]:
    """What compressed-tensors output of a 16-bit model should know about the profile of its scales."""
    narrow = any(i.dtype in (torch.bfloat16, torch.float16) for i in source.infos)
    if plan.scheme.profile.rounding == "compressed-tensors" or not narrow:
        return []
    return [
        f"profile {plan.scheme.profile.name!r}, not {COMPRESSED_TENSORS_PROFILE.name!r}: scales are stored "
        f"in float32 where the model's dtype cannot hold them, and transformers' default load path rounds "
        f"them to the model's dtype (mono-quant verify shows whether the loaded weights still match)"
    ]


def model_of(source: Source, input: Path, fmt: str, config: str | Path | None) -> Model | None:
    """The model config in play, if any, and its layout.

    ``config`` if given, else the input folder's ``config.json``, else (for
    compressed-tensors) the ``config.json`` beside a single input file.
    compressed-tensors output without one is refused.
    """
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise InputError(
                f"the model config {path} does not exist; check the path given to {option('config', None)}."
            )
    elif source.kind == "folder" and source.path is not None and (source.path / "config.json").is_file():
        path = source.path / "config.json"
    elif fmt == ct.FORMAT and source.kind == "file" and (input.parent / "config.json").is_file():
        path = input.parent / "config.json"
    elif fmt == ct.FORMAT:
        raise UsageError(
            f"compressed-tensors output is a model folder, and its config.json must be the model's own "
            f"(a loader needs model_type and the architecture); {input} is a single file with no config.json "
            f"beside it. Pass {option('config', 'path/to/config.json')}, or quantize the model's folder."
        )
    else:
        return None
    cfg = read_config(path)
    tensors = [(i.name, i.dtype, i.shape) for i in source.infos]
    return Model(cfg, path, model_layout(cfg, tensors))


def model_selection(plan: Plan, source: Source, layout: ModelLayout) -> tuple[Plan, list[str]]:
    """Select a model's ``Linear`` weights (unless ``include`` was given); notes say what is left and why."""
    notes = [f"model-aware selection by {layout.method}: the weights of Linear modules", *layout.notes]
    if plan.selection.include or plan.selection.names is not None:
        return plan, [f"{option('include', None)} given: it replaces the model-aware selection"]
    selected = layout.selected_weights
    left: dict[str, list[str]] = {}
    for info in source.infos:
        if info.name in selected or len(info.shape) < 2 or not info.dtype.is_floating_point:
            continue
        module = info.name.removesuffix(".weight")
        why = (
            "ignored Linear (runtimes keep it in full precision)"
            if module in layout.ignored
            else ("not a Linear weight (embedding table, or a layer runtimes do not quantize)")
        )
        left.setdefault(why, []).append(info.name)
    for why, names in left.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        notes.append(f"left unquantized, {why}: {shown}")
    notes.append(f"to choose other tensors: {option('include', None)} / {option('exclude', None)}")
    selection = Selection((), plan.selection.exclude, selected)
    return dataclasses.replace(plan, selection=selection), notes


def preflight(source: Source, plan: Plan, fmt: str, model: Model | None = None) -> list[str]:
    """Fail on option/tensor mismatches from the headers alone, before any data is read; return notes."""
    for pattern in plan.selection.include:
        if not any(fnmatch.fnmatchcase(i.name, pattern) for i in source.infos):
            sample = ", ".join(repr(i.name) for i in source.infos[:3])
            raise UsageError(
                f"{option('include', pattern)} matches no tensor of {source.path or source.input_paths[0]} "
                f"(names look like {sample}); nothing would be quantized. Check the pattern (fnmatch syntax, "
                f"matched against the full name)."
            )
    float_codes = plan.dtype.is_float_code
    if fmt == ct.FORMAT:
        if float_codes:  # FP8 -> float-quantized, NVFP4/MXFP4 -> their pack-quantized formats
            ctf.check_scheme(plan.scheme, plan.dtype)
        else:
            ct.check_scheme(plan.scheme, plan.dtype)
    notes = [
        f"{option('exclude', pattern)} matched no tensor"
        for pattern in plan.selection.exclude
        if not any(fnmatch.fnmatchcase(i.name, pattern) for i in source.infos)
    ]
    for info in source.infos:
        if fmt == native.FORMAT:
            native.check_name(info.name)
        wanted, _ = plan.selection.decide(info.name, info.dtype, info.shape)
        if not wanted or plan.dtype.is_float:
            continue
        misfit = plan.group_misfit(info.shape)
        if misfit is not None and plan.nondivisible == "skip":
            continue
        if misfit is not None and plan.nondivisible == "raise":
            gs = plan.granularity.group_size if isinstance(plan.granularity, PerGroup) else 0
            raise TensorError(
                f"{info.name!r} (shape {info.shape}): {misfit}. Pick a {option('group_size', None)} that "
                f"divides it, leave the tensor out ({option('exclude', info.name)}), or pass "
                f"{option('nondivisible', 'skip')} to copy such tensors unquantized"
                + (
                    f" or {option('nondivisible', 'pad')} to make the last group partial."
                    if "pad" in plan.scheme.capabilities.nondivisible and gs
                    else "."
                )
            )
        # Axis range (and the padded group count), with the tensor's name in the message.
        GranuleLayout.of(info.shape, plan.granularity, nondivisible=plan.scheme.nondivisible, name=info.name)
        if fmt == ct.FORMAT:
            (ctf if float_codes else ct).check(info.name, info.shape, plan.dtype, plan.granularity)
            assert model is not None
            if info.name.removesuffix(".weight") not in model.layout.linear:
                raise RefusedError(
                    f"{info.name!r} is not the weight of a Linear module ({model.layout.method}); "
                    f"compressed-tensors quantizes Linear modules only, and a loader would not find it. "
                    f"Leave it out ({option('exclude', info.name)}) or use {option('format', 'native')}."
                )
            packed_zero_point = not plan.scheme.capabilities.symmetric and plan.dtype.bits == 4
            if packed_zero_point and not isinstance(plan.granularity, PerTensor) and info.shape[0] <= 8:
                raise RefusedError(
                    f"{info.name!r} has {info.shape[0]} rows: compressed-tensors (0.20) cannot read an "
                    f"asymmetric 4-bit zero-point packed into a single int32 row. Leave it out "
                    f"({option('exclude', info.name)}), use a symmetric scheme, or "
                    f"{option('format', 'native')}."
                )
    return notes
