"""What a checkpoint holds, from its headers: tensors, schemes, dtypes, sizes, producing versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats import native
from mono_quant.cli._report import human_bytes
from mono_quant.cli._source import Shard, open_source
from mono_quant.core import granularity_from_dict

__all__ = ["inspect_checkpoint", "render_inspect"]

_CT_SUFFIXES = ("_packed", "_scale", "_zero_point", "_shape")


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
    """Describe a checkpoint (plain, native or compressed-tensors) as JSON-ready data.

    Only headers are read for safetensors (a ``.pt`` file is loaded, with ``weights_only=True``).

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> p = Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_file({"w": torch.zeros(2, 3)}, p)
    >>> info = inspect_checkpoint(p)
    >>> info["format"], info["tensors"][0]["shape"]
    ('plain', [2, 3])
    """
    source = open_source(path)
    formats: set[str] = set()
    producers: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    # A shard of a compressed-tensors folder, given alone, takes the config.json beside it.
    folder = source.path if source.kind == "folder" else Path(path).parent
    quant_config = _ct_config(folder)
    for shard in source.shards:
        fmt = shard.metadata.get(native.KEY_FORMAT) or ("compressed-tensors" if quant_config else "plain")
        formats.add(fmt)
        if native.KEY_PRODUCER in shard.metadata:
            try:
                producers.append(json.loads(shard.metadata[native.KEY_PRODUCER]))
            except ValueError:
                producers.append({"raw": shard.metadata[native.KEY_PRODUCER]})
        if fmt == native.FORMAT:
            rows += _native_rows(shard)
        elif fmt == ct.FORMAT:
            rows += _ct_rows(shard, quant_config)
        else:
            rows += [
                _plain_row(i.name, list(i.shape), str(i.dtype).removeprefix("torch."), i.nbytes)
                for i in shard.infos
            ]
    unique_producers = [json.loads(p) for p in sorted({json.dumps(p, sort_keys=True) for p in producers})]
    return {
        "path": str(path),
        "kind": source.kind,
        "format": "/".join(sorted(formats)),
        "files": [str(s.path) for s in source.shards if s.path is not None],
        "producer": unique_producers,
        "quantization_config": quant_config,
        "tensors": rows,
        "totals": {
            "tensors": len(rows),
            "quantized": sum(1 for r in rows if r["quantized"]),
            "bytes": sum(int(r["bytes"]) for r in rows),
            "file_bytes": source.file_bytes,
        },
    }


def _plain_row(name: str, shape: list[int], dtype: str, nbytes: int) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": dtype, "quantized": False, "bytes": nbytes}


def _native_rows(shard: Shard) -> list[dict[str, Any]]:
    entries = native.read_header(shard.metadata, str(shard.path or shard.name)) or {}
    stored: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for info in shard.infos:
        base, sep, _ = info.name.rpartition(native.SEP)
        if sep and base in entries:
            stored[base] = stored.get(base, 0) + info.nbytes
    for info in shard.infos:
        base, sep, part = info.name.rpartition(native.SEP)
        if sep and base in entries:
            if part != "codes":
                continue
            e = entries[base]
            qp = e.get("qparams", {})
            try:
                gran = str(granularity_from_dict(json.loads(qp.get("granularity", "{}"))))
            except (ValueError, TypeError):
                gran = "?"
            rows.append(
                {
                    "name": base,
                    "shape": e.get("shape"),
                    "dtype": qp.get("dtype"),
                    "orig_dtype": e.get("orig_dtype"),
                    "quantized": True,
                    "scheme": qp.get("scheme"),
                    "scheme_version": qp.get("scheme_version"),
                    "profile": qp.get("profile"),
                    "granularity": gran,
                    "bytes": stored[base],
                }
            )
        else:
            rows.append(
                _plain_row(info.name, list(info.shape), str(info.dtype).removeprefix("torch."), info.nbytes)
            )
    return rows


def _ct_config(folder: Path | None) -> dict[str, Any] | None:
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError:
        return None
    qc = config.get("quantization_config") if isinstance(config, dict) else None
    return qc if isinstance(qc, dict) and qc.get("quant_method") == "compressed-tensors" else None


def _ct_rows(shard: Shard, config: dict[str, Any] | None) -> list[dict[str, Any]]:
    args_of: dict[str, dict[str, Any]] = {}
    for group in (config or {}).get("config_groups", {}).values():
        for target in group.get("targets", []):
            args_of[target] = group.get("weights") or {}
    names = {i.name for i in shard.infos}
    unlisted = [
        n.removesuffix(".weight_packed")
        for n in sorted(names)
        if n.endswith(".weight_packed") and n.removesuffix(".weight_packed") not in args_of
    ]
    if unlisted:
        # No config names these modules (a shard inspected without its folder): read the bit width
        # from each stored original shape (two int64 values).
        with shard.open() as reader:
            for module in unlisted:
                shape_name = module + ".weight_shape"
                packed = next(i for i in shard.infos if i.name == module + ".weight_packed")
                if shape_name in names and len(packed.shape) == 2:
                    cols = int(reader.get(shape_name).reshape(-1)[-1])
                    bits = packed.shape[1] * 32 // max(cols, 1)
                    args_of[module] = {"num_bits": bits if bits in ct.BITS else 0}
    modules: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for info in shard.infos:
        for suffix in _CT_SUFFIXES:
            module = info.name.removesuffix(".weight" + suffix)
            if info.name.endswith(".weight" + suffix) and module in args_of:
                modules[module] = modules.get(module, 0) + info.nbytes
                break
    for info in shard.infos:
        module = info.name.removesuffix(".weight_packed")
        if info.name.endswith(".weight_packed") and module in args_of:
            args = args_of[module]
            bits = int(args.get("num_bits", 0))
            rows.append(
                {
                    "name": module + ".weight",
                    "shape": [info.shape[0], info.shape[1] * 32 // bits] if bits else list(info.shape),
                    "dtype": f"int{bits}",
                    "quantized": True,
                    "scheme": "compressed-tensors",
                    "granularity": f"{args.get('strategy')}"
                    + (f"(group_size={args['group_size']})" if args.get("group_size") else ""),
                    "symmetric": args.get("symmetric"),
                    "bytes": modules[module],
                }
            )
        elif any(
            info.name.endswith(".weight" + s) and info.name.removesuffix(".weight" + s) in args_of
            for s in _CT_SUFFIXES
        ):
            continue
        else:
            rows.append(
                _plain_row(info.name, list(info.shape), str(info.dtype).removeprefix("torch."), info.nbytes)
            )
    return rows


def render_inspect(info: dict[str, Any], *, width: int = 60) -> str:
    """The terminal view of :func:`inspect_checkpoint`'s result."""
    lines = [
        f"{info['path']}: {info['format']} checkpoint ({info['kind']}, {len(info['files']) or 1} file(s))"
    ]
    for p in info["producer"]:
        lines.append("written by: " + ", ".join(f"{k} {v}" for k, v in sorted(p.items())))
    header = ("tensor", "shape", "dtype", "scheme", "granularity", "bytes")
    body = []
    for r in info["tensors"]:
        name = r["name"] if len(r["name"]) <= width else "…" + r["name"][-(width - 1) :]
        scheme = r.get("scheme") or "-"
        if r.get("scheme_version"):
            scheme += f" {r['scheme_version']}"
        body.append(
            (
                name,
                "×".join(str(s) for s in r["shape"] or []) or "()",
                str(r["dtype"]),
                scheme,
                r.get("granularity") or "-",
                human_bytes(int(r["bytes"])),
            )
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines.append(
        "  ".join(
            h.rjust(w) if i == 5 else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(
            c.rjust(w) if i == 5 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in body
    ]
    t = info["totals"]
    lines.append(
        f"{t['tensors']} tensors ({t['quantized']} quantized), {human_bytes(t['bytes'])} of tensor data, "
        f"{human_bytes(t['file_bytes'])} on disk"
    )
    return "\n".join(lines)
