"""The Python API that quantizes: a checkpoint on disk, a state dict, or a model."""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from mono_quant.cli._atomic import Target, atomic_outputs
from mono_quant.cli._checkpoint import QuantizedCheckpoint
from mono_quant.cli._errors import TensorError, UsageError
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats import native
from mono_quant.cli._options import FORMATS, option
from mono_quant.cli._plan import (
    DEFAULT_SCHEME,
    DEFAULT_SQNR_THRESHOLD,
    NonDivisible,
    NonFinite,
    Plan,
    make_plan,
)
from mono_quant.cli._progress import Progress
from mono_quant.cli._report import Report
from mono_quant.cli._select import select_modules
from mono_quant.cli._sinks import FileSink, MemorySink
from mono_quant.cli._source import Source, open_source, source_from_state_dict
from mono_quant.cli._stream import run
from mono_quant.core import Granularity, GranuleLayout, PerGroup

__all__ = [
    "FORMATS",
    "producer",
    "quantize_checkpoint",
    "quantize_model",
    "quantize_state_dict",
]


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "0+unknown"


def producer(plan: Plan | None = None) -> dict[str, str]:
    """Versions of what wrote a checkpoint: mono-quant, core, and the scheme with its distribution."""
    out = {"mono-quant": _version("mono-quant"), "mono-quant-core": _version("mono-quant-core")}
    if plan is not None:
        s = plan.scheme
        out["scheme"] = s.name
        out["scheme_version"] = s.version
        if s.distribution:
            out["scheme_distribution"] = f"{s.distribution} {_version(s.distribution)}"
    return out


def _preflight(source: Source, plan: Plan, fmt: str) -> list[str]:
    """Fail on option/tensor mismatches from the headers alone, before any data is read; return notes."""
    for pattern in plan.selection.include:
        if not any(fnmatch.fnmatchcase(i.name, pattern) for i in source.infos):
            sample = ", ".join(repr(i.name) for i in source.infos[:3])
            raise UsageError(
                f"{option('include', pattern)} matches no tensor of {source.path or source.input_paths[0]} "
                f"(names look like {sample}); nothing would be quantized. Check the pattern (fnmatch syntax, "
                f"matched against the full name)."
            )
    if fmt == ct.FORMAT:
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
            ct.check(info.name, info.shape, plan.dtype, plan.granularity)
    return notes


def quantize_checkpoint(
    input: str | Path,
    output: str | Path,
    *,
    scheme: str = DEFAULT_SCHEME,
    dtype: str | None = None,
    granularity: Granularity | str | None = None,
    axis: int | None = None,
    group_size: int | None = None,
    profile: str | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    format: str = native.FORMAT,
    nonfinite: NonFinite = "raise",
    nondivisible: NonDivisible = "raise",
    sqnr_threshold: float = DEFAULT_SQNR_THRESHOLD,
    force: bool = False,
    report: str | Path | None = None,
    progress: bool = False,
) -> Report:
    """Quantize a checkpoint on disk, streaming tensor by tensor; what ``mono-quant quantize`` runs.

    ``input`` is a ``.safetensors`` file, a checkpoint folder (sharded with a
    ``*.safetensors.index.json``, or holding one ``.safetensors``), or a
    ``.pt``/``.bin`` state dict (``weights_only=True``). A file in gives a file
    out (native); a folder in, or ``format="compressed-tensors"``, gives a folder.
    The output (and ``report``, the report as JSON) is checked before any work,
    written to a temporary entry beside it and published only when the run
    succeeds; an existing one is replaced only with ``force``, and only if it is
    a file or a folder mono-quant wrote (``docs/cli.md`` has the exact rules).
    Returns the :class:`Report`.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> d = Path(tempfile.mkdtemp())
    >>> save_file({"fc.weight": torch.randn(8, 16), "fc.bias": torch.randn(8)}, d / "in.safetensors")
    >>> r = quantize_checkpoint(d / "in.safetensors", d / "out.safetensors", scheme="symmetric", dtype="int8")
    >>> r.count("quantized"), r.count("copied")
    (1, 1)
    """
    start = time.perf_counter()
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; expected one of: {', '.join(FORMATS)}.")
    plan = make_plan(
        scheme=scheme,
        dtype=dtype,
        granularity=granularity,
        axis=axis,
        group_size=group_size,
        profile=profile,
        include=include,
        exclude=exclude,
        nonfinite=nonfinite,
        nondivisible=nondivisible,
        sqnr_threshold=sqnr_threshold,
    )
    source = open_source(input)
    out = Path(output)
    folder = source.kind == "folder" or format == ct.FORMAT
    if folder and out.name.endswith(".safetensors"):
        why = "the input is a folder" if source.kind == "folder" else f"the {format} format is a folder"
        raise UsageError(
            f"the output {out} would be a folder ({why}) named like a file; choose a folder name "
            f"without .safetensors."
        )
    notes = _preflight(source, plan, format)
    targets = [Target(out, folder, force, "output")]
    if report is not None:
        targets.append(Target(Path(report), False, force, "report"))
    bar = Progress(len(source.infos), sum(i.nbytes for i in source.infos), enabled=progress)
    with atomic_outputs(targets, protect=source.input_paths) as tmps:
        sink = FileSink(
            tmps[0],
            fmt=format,
            producer=producer(plan),
            source=source,
            folder=folder,
            symmetric=plan.scheme.capabilities.symmetric,
        )
        try:
            tensors = run(source, plan, sink, progress=bar)
            sink.finish()
        except BaseException:
            sink.abort()
            raise
        finally:
            bar.close()
        result = Report(
            tensors,
            plan=plan.describe(),
            input=str(input),
            output=str(output),
            format=format,
            wall_time_s=time.perf_counter() - start,
            input_file_bytes=source.file_bytes,
            output_file_bytes=sink.file_bytes,
            notes=notes,
        )
        if report is not None:
            result.write_json(tmps[1])
    return result


def _quantize_source(source: Source, plan: Plan, notes: list[str]) -> QuantizedCheckpoint:
    start = time.perf_counter()
    notes = [*notes, *_preflight(source, plan, "memory")]
    sink = MemorySink()
    tensors = run(source, plan, sink)
    report = Report(
        tensors,
        plan=plan.describe(),
        input="<state dict>",
        format="memory",
        wall_time_s=time.perf_counter() - start,
        notes=notes,
    )
    return QuantizedCheckpoint(sink.entries, report=report)


def quantize_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    scheme: str = DEFAULT_SCHEME,
    dtype: str | None = None,
    granularity: Granularity | str | None = None,
    axis: int | None = None,
    group_size: int | None = None,
    profile: str | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    nonfinite: NonFinite = "raise",
    nondivisible: NonDivisible = "raise",
    sqnr_threshold: float = DEFAULT_SQNR_THRESHOLD,
) -> QuantizedCheckpoint:
    """Quantize a state dict in memory, selecting tensors as ``quantize_checkpoint`` does.

    The input is not modified; unselected tensors are kept by reference.

    >>> import torch
    >>> qc = quantize_state_dict({"w": torch.randn(4, 8), "b": torch.zeros(4)}, scheme="symmetric")
    >>> qc.quantized_names, qc["w"].codes.dtype
    (['w'], torch.int8)
    """
    plan = make_plan(
        scheme=scheme,
        dtype=dtype,
        granularity=granularity,
        axis=axis,
        group_size=group_size,
        profile=profile,
        include=include,
        exclude=exclude,
        nonfinite=nonfinite,
        nondivisible=nondivisible,
        sqnr_threshold=sqnr_threshold,
    )
    return _quantize_source(source_from_state_dict(state_dict), plan, [])


def quantize_model(
    module: torch.nn.Module,
    *,
    types: Iterable[type[torch.nn.Module]] | None = None,
    embeddings: bool = False,
    scheme: str = DEFAULT_SCHEME,
    dtype: str | None = None,
    granularity: Granularity | str | None = None,
    axis: int | None = None,
    group_size: int | None = None,
    profile: str | None = None,
    exclude: Iterable[str] = (),
    nonfinite: NonFinite = "raise",
    nondivisible: NonDivisible = "raise",
    sqnr_threshold: float = DEFAULT_SQNR_THRESHOLD,
) -> QuantizedCheckpoint:
    """Quantize the weights of a model's modules, selected by module type; the model is not modified.

    ``types`` defaults to Linear and Conv1d/2d/3d; ``embeddings=True`` adds
    Embedding. A subclass that defines its own ``forward`` is passed over (the
    report's notes say which and why) unless its class is named in ``types``.
    Returns the whole state dict: selected weights quantized, the rest unchanged.

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> quantize_model(m, scheme="symmetric").quantized_names
    ['0.weight', '2.weight']
    """
    names, passed = select_modules(module, types, embeddings=embeddings)
    plan = make_plan(
        scheme=scheme,
        dtype=dtype,
        granularity=granularity,
        axis=axis,
        group_size=group_size,
        profile=profile,
        exclude=exclude,
        names=names,
        nonfinite=nonfinite,
        nondivisible=nondivisible,
        sqnr_threshold=sqnr_threshold,
    )
    notes = [f"module {name or '<root>'!r} not quantized: {why}" for name, why in passed]
    with torch.no_grad():
        return _quantize_source(source_from_state_dict(module.state_dict()), plan, notes)
