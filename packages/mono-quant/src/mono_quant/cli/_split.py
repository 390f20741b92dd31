"""One quantization split over processes or machines: each job does a fixed subset of a sharded input's files.

``quantize_checkpoint(..., num_shards=n, shard_index=i)`` (``--num-shards n
--shard-index i``) quantizes the input files assigned to job ``i`` and publishes
them, with a ``part.json`` that says what they hold, as the folder
``OUTPUT.parts/part-0000i-of-0000n``. Any scheduler can run the ``n`` jobs: a
local process pool (``--jobs n``), a Slurm job array, Ray. ``merge_index``
(``mono-quant merge-index OUTPUT``) then checks the parts, links their files
into ``OUTPUT`` with the index, the model's other files and ``config.json``, and
publishes it: the same bytes a single run writes.

The assignment is deterministic: the input's files, largest first (ties by
name), each go to the job with the fewest bytes so far (ties: the lower index).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mono_quant.cli._atomic import Target, atomic_outputs
from mono_quant.cli._errors import InputError, UsageError
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._guard import foreign_content
from mono_quant.cli._options import option
from mono_quant.cli._report import Report, TensorReport
from mono_quant.cli._sinks import Model, finish_folder
from mono_quant.cli._source import Source, open_source

__all__ = [
    "PART_FILE",
    "assign_shards",
    "merge_index",
    "part_folder",
    "parts_folder",
    "remove_parts",
    "write_part",
]

PART_FILE = "part.json"
_PART_VERSION = 1


def parts_folder(output: Path) -> Path:
    """Where the jobs of a split run publish their parts: ``OUTPUT.parts`` beside ``OUTPUT``."""
    return output.with_name(output.name + ".parts")


def part_folder(output: Path, index: int, count: int) -> Path:
    """The folder job ``index`` of ``count`` publishes.

    >>> part_folder(Path("out"), 2, 8).as_posix()
    'out.parts/part-00002-of-00008'
    """
    return parts_folder(output) / f"part-{index:05d}-of-{count:05d}"


def assign_shards(sizes: dict[str, int], count: int) -> list[list[str]]:
    """Input file names per job: largest first to the least-loaded job, each job's files in name order.

    >>> assign_shards({"a": 5, "b": 4, "c": 3, "d": 3}, 2)
    [['a', 'd'], ['b', 'c']]
    """
    loads = [0] * count
    jobs: list[list[str]] = [[] for _ in range(count)]
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        job = min(range(count), key=lambda j: (loads[j], j))
        jobs[job].append(name)
        loads[job] += sizes[name]
    return [sorted(j) for j in jobs]


def check_split(source: Source, shard_index: int | None, num_shards: int | None) -> list[str]:
    """The input files of job ``shard_index``, or :class:`UsageError` for options that cannot split it."""
    if (shard_index is None) != (num_shards is None):
        raise UsageError(
            f"{option('num_shards', None)} and {option('shard_index', None)} go together; pass both or "
            f"neither."
        )
    assert shard_index is not None and num_shards is not None
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(
            f"{option('shard_index', None)} must be in [0, {num_shards}) and {option('num_shards', None)} at "
            f"least 1; got shard index {shard_index} of {num_shards}."
        )
    if source.kind != "folder" or len(source.shards) < num_shards:
        have = len(source.shards) if source.kind == "folder" else 1
        raise UsageError(
            f"a split run gives each job whole input files; this input has {have} file(s), fewer than the "
            f"{num_shards} jobs asked for. Use at most {have} jobs."
        )
    sizes = {s.name: sum(i.nbytes for i in s.infos) for s in source.shards}
    return assign_shards(sizes, num_shards)[shard_index]


def part_data(
    *,
    index: int,
    count: int,
    run: dict[str, Any],
    weight_map: dict[str, str],
    data_bytes: int,
    file_bytes: int,
    entries: list[tuple[str, dict[str, Any]]],
    tensors: list[TensorReport],
    notes: list[str],
    wall_time_s: float,
) -> dict[str, Any]:
    """What ``part.json`` holds: enough to merge without reading any tensor again."""
    return {
        "part_version": _PART_VERSION,
        "index": index,
        "count": count,
        "run": run,
        "weight_map": weight_map,
        "data_bytes": data_bytes,
        "file_bytes": file_bytes,
        "compressed_tensors_entries": [[name, args] for name, args in entries],
        "tensors": [dataclasses.asdict(t) for t in tensors],
        "notes": notes,
        "wall_time_s": wall_time_s,
    }


def write_part(folder: Path, data: dict[str, Any]) -> None:
    """Write ``part.json`` into a part's (temporary) folder."""
    (folder / PART_FILE).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _read_parts(parts: Path) -> list[dict[str, Any]]:
    found = sorted(parts.glob(f"part-*-of-*/{PART_FILE}")) if parts.is_dir() else []
    if not found:
        raise InputError(
            f"{parts} holds no published part; run the jobs ({option('num_shards', None)} N "
            f"{option('shard_index', None)} I) first."
        )
    data = []
    for f in found:
        try:
            part = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{f} is not readable: {exc}.") from exc
        if part.get("part_version") != _PART_VERSION:
            raise InputError(
                f"{f} was written by another mono-quant version (part format {part.get('part_version')})."
            )
        data.append(part)
    count = data[0]["count"]
    indexes = sorted(p["index"] for p in data)
    missing = sorted(set(range(count)) - set(indexes))
    if missing or len(indexes) != count:
        raise InputError(
            f"{parts} has {len(indexes)} of the {count} parts; missing: "
            f"{', '.join(map(str, missing)) or 'none'} (or a part is there twice). Run the missing jobs, "
            f"then merge again."
        )
    for p in data:
        if p["run"] != data[0]["run"]:
            raise InputError(
                f"part {p['index']} in {parts} comes from another run than part {data[0]['index']} (other "
                f"options, input or versions); rerun it with the same options."
            )
    return sorted(data, key=lambda p: p["index"])


def merge_index(
    output: str | Path, *, force: bool = False, report: str | Path | None = None, keep_parts: bool = False
) -> Report:
    """Join the parts of a split run into ``output``: what a single run writes, byte for byte.

    Checks that every part is there and comes from the same run, hard-links (or
    copies) their files into a new folder with the index, the input's other files
    and (compressed-tensors) ``config.json``, and publishes it atomically. The
    parts folder is removed afterwards unless ``keep_parts``. Returns the report
    of the whole run (tensors in input order, energies pooled).
    """
    start = time.perf_counter()
    out = Path(output)
    parts = parts_folder(out)
    data = _read_parts(parts)
    run = data[0]["run"]
    source = open_source(run["input"])
    model: Model | None = None
    if run["model_config"] is not None:
        from mono_quant.cli._model import model_layout, read_config

        cfg = read_config(Path(run["model_config"]))
        model = Model(
            cfg,
            Path(run["model_config"]),
            model_layout(cfg, [(i.name, i.dtype, i.shape) for i in source.infos]),
        )
    weight_map: dict[str, str] = {}
    for part in data:
        weight_map.update(part["weight_map"])
    builder = ct.QuantizationConfigBuilder()
    by_name = {name: args for part in data for name, args in part["compressed_tensors_entries"]}
    reports = {
        t["name"]: TensorReport(**{**t, "shape": tuple(t["shape"])}) for p in data for t in p["tensors"]
    }
    for info in source.infos:  # the single run's order
        if info.name in by_name:
            builder.add(info.name, by_name[info.name])
    files = {
        name: parts / _part_dir(part) / name for part in data for name in set(part["weight_map"].values())
    }
    targets = [Target(out, True, force, "output")]
    if report is not None:
        targets.append(Target(Path(report), False, force, "report"))
    with atomic_outputs(targets, protect=[*source.input_paths, parts]) as tmps:
        for name, path in sorted(files.items()):
            try:
                os.link(path, tmps[0] / name)
            except OSError:  # another filesystem, or no hard links: copy
                shutil.copyfile(path, tmps[0] / name)
        finish_folder(
            tmps[0], source, run["format"], weight_map, sum(p["data_bytes"] for p in data), builder, model
        )
        result = Report(
            [reports[i.name] for i in source.infos],
            plan=run["plan"],
            input=run["input"],
            output=str(output),
            format=run["format"],
            wall_time_s=max(p["wall_time_s"] for p in data) + time.perf_counter() - start,
            input_file_bytes=source.file_bytes,
            output_file_bytes=sum(p["file_bytes"] for p in data),
            notes=[*data[0]["notes"], f"merged from {len(data)} parts"],
        )
        if report is not None:
            result.write_json(tmps[1])
    if not keep_parts:
        remove_parts(out)
    return result


def _part_dir(part: dict[str, Any]) -> str:
    return f"part-{part['index']:05d}-of-{part['count']:05d}"


def remove_parts(output: Path) -> None:
    """Remove ``output``'s part folders that hold only what mono-quant wrote, then the empty parts folder."""
    parts = parts_folder(output)
    for folder in sorted(parts.glob("part-*-of-*")) if parts.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink() and foreign_content(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        parts.rmdir()
