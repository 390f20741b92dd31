"""Reading native checkpoints back: load, dequantize (in memory or streaming), and save."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._atomic import atomic_output
from mono_quant.cli._checkpoint import QuantizedCheckpoint
from mono_quant.cli._errors import InputError, UsageError
from mono_quant.cli._formats import native
from mono_quant.cli._progress import Progress
from mono_quant.cli._safetensors import StreamingWriter
from mono_quant.cli._sinks import NATIVE_CONFIG
from mono_quant.cli._source import Shard, Source, open_source
from mono_quant.cli._tensor import QuantizedTensor

__all__ = ["dequantize_checkpoint", "dequantize_state_dict", "load_quantized", "save_quantized"]


def _entries(shard: Shard) -> dict[str, dict[str, Any]]:
    where = str(shard.path or shard.name)
    entries = native.read_header(shard.metadata, where)
    if entries is None:
        fmt = shard.metadata.get(native.KEY_FORMAT)
        hint = (
            " It is in the compressed-tensors layout: load it with compressed-tensors, transformers or vLLM."
            if fmt == "compressed-tensors"
            else " Quantize it first with mono-quant quantize."
        )
        raise InputError(f"{where} is not a mono-quant native checkpoint.{hint}")
    return entries


def _walk(
    shard: Shard, entries: dict[str, dict[str, Any]], get: Callable[[str], torch.Tensor]
) -> Iterable[tuple[str, QuantizedTensor | torch.Tensor]]:
    """``(name, QuantizedTensor | tensor)`` in file order, one at a time."""
    where = str(shard.path or shard.name)
    keys = {i.name for i in shard.infos}

    def checked(key: str) -> torch.Tensor:
        if key not in keys:
            raise KeyError(key)
        return get(key)

    seen = set()
    for info in shard.infos:
        base, sep, part = info.name.rpartition(native.SEP)
        if sep and base in entries:
            if part == "codes":
                seen.add(base)
                yield base, native.decode(base, entries[base], checked, where=where)
            continue
        yield info.name, get(info.name)
    missing = sorted(set(entries) - seen)
    if missing:
        raise InputError(
            f"{where}: {missing[0]!r} is described in the metadata but has no codes; the file is damaged."
        )


def _native_source(path: str | Path) -> Source:
    p = Path(path)
    if p.suffix in (".pt", ".pth", ".bin") and p.is_file():
        raise InputError(f"{p} is a pickle state dict, not a mono-quant native checkpoint (.safetensors).")
    return open_source(p)


def load_quantized(path: str | Path) -> QuantizedCheckpoint:
    """Load a native checkpoint (file or folder): codes (unpacked) and QParams, exactly as written.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from mono_quant.cli import quantize_state_dict, save_quantized
    >>> qc = quantize_state_dict({"w": torch.randn(4, 8)}, scheme="int4-symmetric", group_size=8)
    >>> path = save_quantized(qc, Path(tempfile.mkdtemp()) / "q.safetensors")
    >>> load_quantized(path).equals(qc)
    True
    """
    source = _native_source(path)
    out: dict[str, QuantizedTensor | torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for shard in source.shards:
        entries = _entries(shard)
        metadata.update({k: v for k, v in shard.metadata.items() if not k.startswith(native.TENSOR_PREFIX)})
        with shard.open() as reader:
            for name, value in _walk(shard, entries, reader.get):
                out[name] = value
    return QuantizedCheckpoint(out, metadata=metadata)


def dequantize_state_dict(
    checkpoint: Mapping[str, QuantizedTensor | torch.Tensor], *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Floats back: each :class:`QuantizedTensor` dequantized (core's ``dequantize``), the rest as is.

    ``dtype`` (default: each tensor's original dtype) applies to every floating
    tensor, the unquantized ones included; integer tensors are kept as they are.

    >>> import torch
    >>> from mono_quant.cli import quantize_state_dict
    >>> w = torch.randn(4, 8)
    >>> out = dequantize_state_dict(quantize_state_dict({"w": w}, scheme="symmetric"))
    >>> bool((out["w"] - w).abs().max() < 0.05)
    True
    """
    return {name: _floats(value, dtype) for name, value in checkpoint.items()}


def _floats(value: QuantizedTensor | torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``value`` dequantized, or cast when it is a floating tensor and ``dtype`` is given."""
    if isinstance(value, QuantizedTensor):
        return value.dequantize(dtype)
    if dtype is not None and value.is_floating_point():
        return value.to(dtype)
    return value


def _output_size(source: Source, dtype: torch.dtype | None) -> tuple[int, int]:
    """Tensors and bytes :func:`dequantize_checkpoint` writes (what its progress bar counts)."""
    count = nbytes = 0
    for shard in source.shards:
        entries = _entries(shard)
        for info in shard.infos:
            base, sep, part = info.name.rpartition(native.SEP)
            if sep and base in entries:
                if part == "codes":
                    entry = entries[base]
                    out = dtype or native.parse_dtype(str(entry.get("orig_dtype", "float32")))
                    numel = math.prod(int(s) for s in entry.get("shape", ()))
                    count, nbytes = count + 1, nbytes + numel * out.itemsize
                continue
            out = dtype if dtype is not None and info.dtype.is_floating_point else info.dtype
            count, nbytes = count + 1, nbytes + math.prod(info.shape) * out.itemsize
    return count, nbytes


def dequantize_checkpoint(
    input: str | Path,
    output: str | Path,
    *,
    dtype: torch.dtype | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Dequantize a native checkpoint on disk tensor by tensor into plain safetensors (atomically).

    Bit-identical to :func:`dequantize_state_dict` of :func:`load_quantized`.
    A file gives a file; a folder gives a folder (index and other files carried over).
    ``dtype`` (default: each tensor's original dtype) applies to every floating
    tensor, the ones that were never quantized included, so the output has one
    float dtype; integer tensors are copied as they are.

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import load_file
    >>> from mono_quant.cli import quantize_state_dict, save_quantized
    >>> d = Path(tempfile.mkdtemp())
    >>> save_quantized(quantize_state_dict({"w": torch.randn(4, 8)}), d / "q.safetensors").name
    'q.safetensors'
    >>> out = dequantize_checkpoint(d / "q.safetensors", d / "w.safetensors")
    >>> load_file(out)["w"].dtype
    torch.float32
    """
    source = _native_source(input)
    out = Path(output)
    folder = source.kind == "folder"
    if folder and out.name.endswith(".safetensors"):
        raise UsageError(
            f"the output {out} would be a folder (the input is a folder) named like a file; choose a folder "
            f"name without .safetensors."
        )
    count, nbytes = _output_size(source, dtype)
    bar = Progress(count, nbytes, enabled=progress)
    with atomic_output(out, force=force, directory=folder, protect=source.input_paths) as tmp:
        weight_map: dict[str, str] = {}
        total = 0
        for shard in source.shards:
            entries = _entries(shard)
            writer = StreamingWriter(tmp / shard.name if folder else tmp, {"format": "pt"})
            try:
                with shard.open() as reader:
                    for name, value in _walk(shard, entries, reader.get):
                        t = _floats(value, dtype)
                        writer.add(name, t)
                        weight_map[name] = shard.name
                        bar.update(t.numel() * t.element_size())
                        del t, value
                total += writer.data_bytes
                writer.close()
            except BaseException:
                writer.abort()
                raise
        bar.close()
        if folder:
            _finish_folder(source, tmp, weight_map, total)
    return out


def _finish_folder(source: Source, root: Path, weight_map: dict[str, str], total: int) -> None:
    assert source.path is not None
    indexes = sorted(source.path.glob("*.safetensors.index.json"))
    if indexes:
        index = {"metadata": {**source.index_metadata, "total_size": total}, "weight_map": weight_map}
        (root / indexes[0].name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    for f in source.extra_files:
        rel = f.relative_to(source.path)
        # Floats again: the model's config is a loadable config.json once more.
        dest = root / ("config.json" if rel == Path(NATIVE_CONFIG) else rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)


def save_quantized(
    checkpoint: Mapping[str, QuantizedTensor | torch.Tensor], path: str | Path, *, force: bool = False
) -> Path:
    """Write a quantized checkpoint held in memory as one native safetensors file (atomically).

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from mono_quant.cli import quantize_state_dict
    >>> qc = quantize_state_dict({"w": torch.randn(2, 4)})
    >>> p = save_quantized(qc, Path(tempfile.mkdtemp()) / "q.safetensors")
    >>> p.name
    'q.safetensors'
    """
    from mono_quant.cli._api import producer

    out = Path(path)
    prod = producer()
    schemes = sorted({v.qparams.scheme for v in checkpoint.values() if isinstance(v, QuantizedTensor)})
    if schemes:
        prod["schemes"] = ",".join(schemes)
    with atomic_output(out, force=force) as tmp:
        writer = StreamingWriter(tmp, native.file_metadata(prod))
        try:
            for name, value in checkpoint.items():
                if isinstance(value, QuantizedTensor):
                    tensors, (key, meta) = native.encode(name, value)
                    writer.metadata[key] = meta
                    for n, t in tensors:
                        writer.add(n, t)
                else:
                    native.check_name(name)
                    writer.add(name, value)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return out
