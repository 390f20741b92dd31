"""Sinks of the loop: an in-memory dict, or safetensors files in the native or compressed-tensors format."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats import compressed_tensors_float as ctf
from mono_quant.cli._formats import native
from mono_quant.cli._model import ModelLayout
from mono_quant.cli._safetensors import StreamingWriter
from mono_quant.cli._source import Shard, Source
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import QParams

__all__ = ["NATIVE_CONFIG", "FileSink", "MemorySink", "Model", "finish_folder", "header_reserve"]

#: Where a native output folder keeps the model's ``config.json``: under another name, so that
#: transformers (and any loader that reads config.json) fails loudly instead of loading random weights.
NATIVE_CONFIG = "mono-quant.config.json"


@dataclass(frozen=True)
class Model:
    """The model config a run uses (input folder, ``--config``, or beside a single file) and its layout."""

    config: dict[str, Any]
    path: Path
    layout: ModelLayout


#: Header bytes budgeted per input tensor, besides its name and dimensions: up to four
#: stored tensors (codes, scale, zero-point, shape), each an entry with dtype and offsets...
_ENTRY_BYTES = 96
#: ... and one metadata entry (native format: shape, dtypes and QParams metadata, as JSON).
_METADATA_BYTES = 1024
#: Bytes budgeted per dimension (up to 20 digits and a comma), in each entry.
_DIM_BYTES = 21


def header_reserve(shard: Shard, metadata: dict[str, str]) -> int:
    """Header bytes to reserve for the output file of ``shard``: a generous bound for the built-in formats.

    Stored names are the input name plus a suffix (``::codes``, ``_packed``, ...).
    Too small is never wrong, only slower: :class:`StreamingWriter` then writes
    the file again behind a header of the right size.
    """
    total = len(json.dumps({"__metadata__": metadata}, separators=(",", ":")))
    for info in shard.infos:
        name = len(json.dumps(info.name)) + 16
        dims = _DIM_BYTES * len(info.shape)
        total += 4 * (name + _ENTRY_BYTES + dims) + name + _METADATA_BYTES + dims
    return total


class MemorySink:
    """Collects ``name -> QuantizedTensor | Tensor`` (tensors are kept by reference, not copied)."""

    #: Input tensors are kept, so each must be read into its own memory.
    retains_inputs = True

    def __init__(self) -> None:
        self.entries: dict[str, QuantizedTensor | torch.Tensor] = {}

    def begin_shard(self, shard: Shard) -> None:
        """Nothing to do per shard."""

    def copy(self, name: str, tensor: torch.Tensor) -> int:
        """Keep ``tensor`` as is."""
        self.entries[name] = tensor
        return tensor.numel() * tensor.element_size()

    def quantized(self, name: str, qt: QuantizedTensor) -> tuple[int, torch.Tensor | None]:
        """Keep ``qt``; it decodes with mono-quant's own dequantize."""
        self.entries[name] = qt
        return qt.nbytes, None

    def end_shard(self) -> None:
        """Nothing to do per shard."""


class FileSink:
    """Writes each input shard to one safetensors file under ``root`` (or to ``root`` itself).

    ``file_bytes`` counts the safetensors files only (what ``Source.file_bytes`` counts on input).

    ``root`` is the temporary path of an atomic output: a file when
    ``folder=False`` (single-file input, native format), else a folder that also
    receives the index (sharded input), the input folder's other files, and, for
    compressed-tensors, ``config.json`` with the ``quantization_config`` block.
    """

    #: Every tensor is written before ``copy``/``quantized`` return, so inputs may share one buffer.
    retains_inputs = False

    def __init__(
        self,
        root: Path,
        *,
        fmt: str,
        producer: dict[str, str],
        source: Source,
        folder: bool,
        symmetric: bool = False,
        model: Model | None = None,
        activations: dict[str, QParams] | Literal["dynamic"] | None = None,
    ) -> None:
        self.root = root
        self.model = model
        #: W8A8: each quantized module's static input QParams (by module name), or "dynamic".
        self.activations = activations
        self.fmt = fmt
        self.source = source
        self.folder = folder
        self.symmetric = symmetric
        self.metadata = native.file_metadata(producer)
        if fmt == ct.FORMAT:
            self.metadata[native.KEY_FORMAT] = ct.FORMAT
            del self.metadata[native.KEY_VERSION]
        self.config = ct.QuantizationConfigBuilder()
        self.weight_map: dict[str, str] = {}
        self.data_bytes = 0
        self.file_bytes = 0
        self._writer: StreamingWriter | None = None
        self._shard = ""

    def begin_shard(self, shard: Shard) -> None:
        """Open the writer of this shard's output file."""
        # A single file written into a folder (compressed-tensors) takes the usual name.
        name = shard.name if self.source.kind == "folder" else "model.safetensors"
        self._writer = StreamingWriter(
            self.root / name if self.folder else self.root,
            self.metadata,
            reserve=header_reserve(shard, self.metadata),
        )
        self._shard = name

    def _add(self, name: str, tensor: torch.Tensor) -> int:
        assert self._writer is not None
        self.weight_map[name] = self._shard
        return self._writer.add(name, tensor)

    def copy(self, name: str, tensor: torch.Tensor) -> int:
        """Write ``tensor`` unchanged."""
        if self.fmt == native.FORMAT:
            native.check_name(name)
        return self._add(name, tensor)

    def quantized(self, name: str, qt: QuantizedTensor) -> tuple[int, torch.Tensor | None]:
        """Write the stored form of ``qt`` in this sink's format; return the bytes and the decoded values.

        The values are ``None`` unless a reader of the file decodes to other values than
        mono-quant's float32 dequantize (NVFP4/MXFP4 readers give bfloat16).
        """
        assert self._writer is not None
        decoded: torch.Tensor | None = None
        if self.fmt == native.FORMAT:
            tensors, (key, value) = native.encode(name, qt)
            self._writer.metadata[key] = value
        elif qt.quant_dtype.is_float_code:
            tensors, args = ctf.encode(name, qt)  # checks its decode against our dequantize, bit for bit
            inputs = ct.dynamic_activations("float") if self.activations == "dynamic" else None
            group = {"format": ctf.format_for(qt.quant_dtype), "weights": args, "input_activations": inputs}
            self.config.add(name, group)
            values = ctf.decode(name, dict(tensors), args)
            if values.dtype != torch.float32:  # e.g. NVFP4/MXFP4 readers give bfloat16
                decoded = values
        else:
            activation: ct.Activation | None = None
            if self.activations == "dynamic":
                activation = "dynamic"
            elif isinstance(self.activations, dict):
                activation = self.activations[name.removesuffix(".weight")]
            tensors, group = ct.encode(name, qt, symmetric=self.symmetric, activation=activation)
            self.config.add(name, group)
        return sum(self._add(n, t) for n, t in tensors), decoded

    def end_shard(self) -> None:
        """Finish this shard's file (header, data, fsync)."""
        assert self._writer is not None
        self.data_bytes += self._writer.data_bytes
        self.file_bytes += self._writer.close()  # removes its files itself if it fails
        self._writer = None

    def abort(self) -> None:
        """Remove the file being written, if any."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def finish(self) -> None:
        """Write the index, copy the input folder's other files, write config.json (compressed-tensors)."""
        if self.folder:
            finish_folder(
                self.root, self.source, self.fmt, self.weight_map, self.data_bytes, self.config, self.model
            )


def finish_folder(
    root: Path,
    source: Source,
    fmt: str,
    weight_map: dict[str, str],
    data_bytes: int,
    config: ct.QuantizationConfigBuilder,
    model: Model | None,
) -> None:
    """The rest of an output folder once its weight files are written: index, other files, config.json.

    The index is written for a sharded input (or one that had an index); the
    input folder's other files are copied (``config.json`` as
    :data:`NATIVE_CONFIG` in the native format); compressed-tensors gets the
    model's ``config.json`` with its ``quantization_config``.
    """
    if len(source.shards) > 1 or source.index_metadata:
        index = {"metadata": {**source.index_metadata, "total_size": data_bytes}, "weight_map": weight_map}
        name = "model.safetensors.index.json"
        if source.path is not None:
            found = sorted(source.path.glob("*.safetensors.index.json"))
            name = found[0].name if found else name
        _write_json(root / name, index)
    for f in source.extra_files:
        assert source.path is not None
        rel = f.relative_to(source.path)
        if rel == Path("config.json"):
            if fmt == ct.FORMAT:
                continue  # written below, with its quantization_config
            rel = Path(NATIVE_CONFIG)
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    if fmt == ct.FORMAT:
        assert model is not None  # the API refuses compressed-tensors output without a model config
        data = dict(model.config)
        data["quantization_config"] = config.build(model.layout)
        _write_json(root / "config.json", data)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
