"""The Python API that quantizes: a checkpoint on disk, a state dict, or a model."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata as md
import multiprocessing
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._atomic import Target, atomic_outputs
from mono_quant.cli._checkpoint import QuantizedCheckpoint
from mono_quant.cli._errors import UsageError
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats import native
from mono_quant.cli._guard import check_output
from mono_quant.cli._options import FORMATS, option
from mono_quant.cli._plan import (
    DEFAULT_SCHEME,
    DEFAULT_SQNR_THRESHOLD,
    NonDivisible,
    NonFinite,
    Plan,
    make_plan,
)
from mono_quant.cli._prepare import activations_of, model_of, model_selection, preflight, profile_notes
from mono_quant.cli._progress import Progress
from mono_quant.cli._report import Report
from mono_quant.cli._select import select_modules
from mono_quant.cli._sinks import FileSink, MemorySink
from mono_quant.cli._source import Source, open_source, source_from_state_dict
from mono_quant.cli._split import check_split, merge_index, part_data, part_folder, remove_parts, write_part
from mono_quant.cli._stream import run
from mono_quant.cli._verify import transformers_asymmetric_regression
from mono_quant.core import (
    COMPRESSED_TENSORS_PROFILE,
    Granularity,
    block_threads,
)

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
    config: str | Path | None = None,
    num_shards: int | None = None,
    shard_index: int | None = None,
    jobs: int = 1,
    threads: int | None = None,
    activations: str | Path | None = None,
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
    ``threads`` (default ``torch.get_num_threads()``) threads work through each
    tensor's blocks, each torch op on one thread (:func:`~mono_quant.core.block_threads`),
    so a core taken by another process costs its share and no more; ``jobs``
    processes share them. Returns the :class:`Report`.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> d = Path(tempfile.mkdtemp())
    >>> save_file({"fc.weight": torch.randn(8, 16), "fc.bias": torch.randn(8)}, d / "in.safetensors")
    >>> r = quantize_checkpoint(d / "in.safetensors", d / "out.safetensors", scheme="symmetric", dtype="int8")
    >>> r.count("quantized"), r.count("copied")
    (1, 1)
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a whole number of at least 1; got {threads!r}.")
    threads = threads or torch.get_num_threads()
    with block_threads(threads):
        start = time.perf_counter()
        if format not in FORMATS:
            raise UsageError(f"unknown format {format!r}; expected one of: {', '.join(FORMATS)}.")
        if jobs != 1:
            options = {
                "scheme": scheme, "dtype": dtype, "granularity": granularity, "axis": axis,
                "group_size": group_size, "profile": profile, "include": tuple(include),
                "exclude": tuple(exclude), "format": format, "nonfinite": nonfinite,
                "nondivisible": nondivisible, "sqnr_threshold": sqnr_threshold, "config": config,
                "activations": activations, "threads": max(1, threads // jobs),
            }  # fmt: skip
            return _quantize_in_jobs(input, output, options, jobs, force=force, report=report)
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
            preferred_profile=COMPRESSED_TENSORS_PROFILE.name if format == ct.FORMAT else None,
        )
        source = open_source(input)
        format_notes = profile_notes(plan, source) if format == ct.FORMAT else []
        model = model_of(source, Path(input), format, config)
        if model is not None:
            plan, model_notes = model_selection(plan, source, model.layout)
        else:
            model_notes = []
        out = Path(output)
        folder = source.kind == "folder" or format == ct.FORMAT
        if folder and out.name.endswith(".safetensors"):
            why = "the input is a folder" if source.kind == "folder" else f"the {format} format is a folder"
            raise UsageError(
                f"the output {out} would be a folder ({why}) named like a file; choose a folder name "
                f"without .safetensors."
            )
        notes = [*format_notes, *model_notes, *preflight(source, plan, format, model)]
        act = activations_of(activations, source, plan, format)
        if (
            format == ct.FORMAT
            and not plan.scheme.capabilities.symmetric
            and transformers_asymmetric_regression()
        ):
            import transformers

            notes.append(
                f"transformers {transformers.__version__} (installed) cannot load asymmetric "
                f"compressed-tensors checkpoints on its default path (weight_zero_point size mismatch, "
                f"a regression after 5.17, llm-compressor's own output included): load with "
                f"CompressedTensorsConfig(dequantize=True), or quantize with a symmetric scheme"
            )
        split = num_shards is not None or shard_index is not None
        if split:
            if report is not None:
                raise UsageError(
                    f"a split run's report is written when its parts are merged: pass "
                    f"{option('report', None)} to merge-index, not to each job."
                )
            names = check_split(source, shard_index, num_shards)
            assert shard_index is not None and num_shards is not None
            run_info = {
                "input": str(Path(input).resolve()),
                "format": format,
                "plan": plan.describe(),
                "selection": plan.selection.describe(),
                "producer": producer(plan),
                "model_config": None if model is None else str(model.path.resolve()),
            }
            source = dataclasses.replace(source, shards=[s for s in source.shards if s.name in names])
            target = part_folder(out, shard_index, num_shards)
            if out.resolve().parent.is_dir():
                target.parent.mkdir(exist_ok=True)
            targets = [Target(target, True, force, "part")]
        else:
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
                model=model,
                activations=act,
            )
            try:
                tensors = run(source, plan, sink, progress=bar)
                if not split:
                    sink.finish()
            except BaseException:
                sink.abort()
                raise
            finally:
                bar.close()
            wall = time.perf_counter() - start
            if split:
                assert shard_index is not None and num_shards is not None
                write_part(
                    tmps[0],
                    part_data(
                        index=shard_index,
                        count=num_shards,
                        run=run_info,
                        weight_map=sink.weight_map,
                        data_bytes=sink.data_bytes,
                        file_bytes=sink.file_bytes,
                        entries=sink.config.entries,
                        tensors=tensors,
                        notes=notes,
                        wall_time_s=wall,
                    ),
                )
                notes = [*notes, f"part {shard_index} of {num_shards}: input files {', '.join(names)}"]
            result = Report(
                tensors,
                plan=plan.describe(),
                input=str(input),
                output=str(targets[0].path),
                format=format,
                wall_time_s=wall,
                input_file_bytes=source.file_bytes,
                output_file_bytes=sink.file_bytes,
                notes=notes,
            )
            if report is not None:
                result.write_json(tmps[1])
        return result


def _quantize_part(
    input: str | Path, output: str | Path, options: dict[str, Any], index: int, count: int
) -> None:
    """One job of ``--jobs``: its share of the threads (in ``options``), its part of the input."""
    quantize_checkpoint(input, output, **options, num_shards=count, shard_index=index, force=True)


def _job_start() -> str:
    """How --jobs starts its processes: fork on Linux when this process runs no other thread.

    Forked jobs skip the 2-3 s a fresh interpreter spends importing torch
    (measured: --jobs 2 on 1.6 GB in 4 shards, 1.14x the speed of --jobs 1 forked,
    0.70x spawned, on 2 cores). Each job runs its torch ops single-threaded inside
    ``block_threads``, so no OpenMP team is needed in the child. A process with
    other threads running (an application calling the API) gets spawn: forking it
    could copy a lock some thread holds.
    """
    return "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"


def _quantize_in_jobs(
    input: str | Path,
    output: str | Path,
    options: dict[str, Any],
    jobs: int,
    *,
    force: bool,
    report: str | Path | None,
) -> Report:
    """``--jobs N``: the split run's ``N`` parts in a local process pool, then one merge."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs must be a whole number of at least 1; got {jobs!r}.")
    out = Path(output)
    check_output(out, force=force, directory=True, role="output")  # refused now, not after the work
    check_split(open_source(input), 0, jobs)
    context = multiprocessing.get_context(_job_start())
    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_quantize_part, input, output, options, i, jobs) for i in range(jobs)]
            for future in futures:
                future.result()  # the first failure, as raised in its job
        return merge_index(out, force=force, report=report)
    except BaseException:
        remove_parts(out)
        raise


def _quantize_source(source: Source, plan: Plan, notes: list[str]) -> QuantizedCheckpoint:
    start = time.perf_counter()
    notes = [*notes, *preflight(source, plan, "memory")]
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
