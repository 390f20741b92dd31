"""Input checkpoints: one safetensors file, a sharded folder, a .pt/.bin state dict, or a dict."""

from __future__ import annotations

import io
import json
import pickle
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._errors import InputError
from mono_quant.cli._options import MANIFEST
from mono_quant.cli._safetensors import dtype_from_name, read_entries, read_safetensors, read_tensor

__all__ = ["Shard", "Source", "TensorInfo", "open_source", "source_from_state_dict"]

#: Files in a checkpoint folder that hold weights in some format; never copied to the output.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor, before its data is read."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        n = 1
        for s in self.shape:
            n *= s
        return n * torch.empty((), dtype=self.dtype).element_size()


class _Reader:
    def get(self, name: str) -> torch.Tensor:
        raise NotImplementedError


class _SafetensorsReader(_Reader):
    """Reads tensors with plain reads into tensor memory: nothing of the file stays mapped.

    With ``reuse`` every tensor is read into one buffer sized for the file's
    largest tensor, so the result of :meth:`get` is only valid until the next
    ``get``; without it each tensor is a fresh allocation the caller may keep.
    """

    def __init__(self, file: io.FileIO, path: Path, *, reuse: bool) -> None:
        self._file = file
        self._path = path
        self._entries = read_entries(file, path)
        self._reuse = reuse
        self._buffer: torch.Tensor | None = None

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name``; raises :class:`InputError` if it is missing, damaged or cut short."""
        entry = self._entries.get(name)
        if entry is None:
            raise InputError(
                f"{name!r} is no longer in {self._path}; the file may have changed during the run or be "
                f"damaged."
            )
        if not self._reuse:
            return read_tensor(self._file, name, entry, self._path)
        if self._buffer is None:
            largest = max(e.nbytes for e in self._entries.values())
            self._buffer = torch.empty(largest, dtype=torch.uint8)
        return read_tensor(self._file, name, entry, self._path, buffer=self._buffer)


class _DictReader(_Reader):
    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def get(self, name: str) -> torch.Tensor:
        return self._tensors[name]


@dataclass
class Shard:
    """One file of the input (or an in-memory dict): its tensors, in file order."""

    name: str
    infos: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    tensors: Mapping[str, torch.Tensor] | None = None

    @contextmanager
    def open(self, *, reuse: bool = False) -> Iterator[_Reader]:
        """A reader for this shard's tensors; one tensor is loaded per ``get``.

        ``reuse=True`` lets a file's reader read every tensor into one buffer:
        for callers that are done with each tensor before asking for the next
        (a tensor of an in-memory dict is returned as is either way). Raises
        :class:`InputError` if the file no longer opens as safetensors.
        """
        if self.tensors is not None:
            yield _DictReader(self.tensors)
            return
        assert self.path is not None
        with read_safetensors(self.path):  # checks the header and that the data covers the file
            pass
        try:
            file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"{self.path} cannot be opened ({exc.strerror or exc}).") from exc
        with file:
            yield _SafetensorsReader(file, self.path, reuse=reuse)


@dataclass
class Source:
    """A checkpoint to read: ``kind`` is ``file``, ``folder`` or ``memory``."""

    kind: str
    shards: list[Shard]
    path: Path | None = None
    extra_files: list[Path] = field(default_factory=list)
    index_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def infos(self) -> list[TensorInfo]:
        """Every tensor of every shard."""
        return [i for s in self.shards for i in s.infos]

    @property
    def input_paths(self) -> list[Path]:
        """The files this source reads (protected from being overwritten)."""
        paths = [s.path for s in self.shards if s.path is not None]
        return paths + ([self.path] if self.path is not None else [])

    @property
    def file_bytes(self) -> int:
        """Size on disk of the weight files read (0 for an in-memory dict)."""
        if self.kind == "file" and self.path is not None:  # a .pt/.bin state dict
            return self.path.stat().st_size
        return sum(s.path.stat().st_size for s in self.shards if s.path is not None)


def open_source(path: str | Path) -> Source:
    """Read the headers of ``path`` and check every shard opens, before any work starts.

    ``path`` is a ``.safetensors`` file; a folder holding a ``*.safetensors.index.json``
    (sharded) or a single ``*.safetensors``; or a ``.pt``/``.bin``/``.pth`` state dict,
    loaded with ``weights_only=True``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; check the path.")
    if p.is_dir():
        return _open_folder(p)
    if p.suffix in PICKLE_SUFFIXES:
        return _open_pickle(p)
    return Source("file", [_safetensors_shard(p, p.name)], path=None)


def _safetensors_shard(path: Path, name: str) -> Shard:
    with read_safetensors(path) as f:
        infos = []
        # File (offset) order: sequential reads, and the order our own writer kept.
        for key in getattr(f, "offset_keys", f.keys)():
            sl = f.get_slice(key)
            infos.append(
                TensorInfo(key, dtype_from_name(sl.get_dtype()), tuple(int(s) for s in sl.get_shape()))
            )
        metadata = dict(f.metadata() or {})
    return Shard(name, infos, metadata, path=path)


def _open_folder(folder: Path) -> Source:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise InputError(
            f"{folder} holds {len(indexes)} safetensors index files ({', '.join(i.name for i in indexes)}); "
            f"keep one, or pass the .safetensors file itself."
        )
    if indexes:
        index_path = indexes[0]
        try:
            index = json.loads(index_path.read_text())
            weight_map: dict[str, str] = dict(index["weight_map"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{index_path} is not a readable safetensors index "
                f"(a JSON object with a 'weight_map'): {exc}."
            ) from exc
        files = sorted(set(weight_map.values()))
        shards = []
        for fname in files:
            shard_path = folder / fname
            if not shard_path.is_file():
                raise InputError(
                    f"{index_path.name} lists the shard {fname}, which is missing from {folder}."
                )
            shards.append(_safetensors_shard(shard_path, fname))
        for shard in shards:
            for info in shard.infos:
                if weight_map.get(info.name) != shard.name:
                    raise InputError(
                        f"{info.name!r} is in {shard.name} but {index_path.name} maps it to "
                        f"{weight_map.get(info.name)!r}; the index does not match the shards."
                    )
        listed = {i.name for s in shards for i in s.infos}
        missing = sorted(set(weight_map) - listed)
        if missing:
            raise InputError(f"{index_path.name} lists {missing[0]!r}, which no shard holds.")
        meta = dict(index.get("metadata") or {})
        extra = _extra_files(folder, skip={index_path})
        return Source("folder", shards, path=folder, extra_files=extra, index_metadata=meta)
    singles = sorted(folder.glob("*.safetensors"))
    if len(singles) != 1:
        what = "no .safetensors file" if not singles else f"{len(singles)} .safetensors files and no index"
        raise InputError(
            f"{folder} holds {what}; pass a .safetensors file, or a folder with one .safetensors file "
            f"or a *.safetensors.index.json."
        )
    return Source(
        "folder",
        [_safetensors_shard(singles[0], singles[0].name)],
        path=folder,
        extra_files=_extra_files(folder, skip=set()),
    )


def _extra_files(folder: Path, skip: set[Path]) -> list[Path]:
    """Non-weight files (config, tokenizer, ...) to carry into an output folder.

    Hidden entries are left (mono-quant's own temporary entries and manifest
    among them), and so is any subfolder that is itself a mono-quant output.
    """
    outputs = [m.parent for m in folder.rglob(MANIFEST) if m.parent != folder]
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or p in skip or any(part.startswith(".") for part in rel.parts):
            continue
        if any(o in p.parents for o in outputs):
            continue
        if p.name.endswith(WEIGHT_SUFFIXES) or p.name.endswith(".index.json"):
            continue
        out.append(p)
    return out


def _open_pickle(path: Path) -> Source:
    try:
        # torch warns about the pickle protocol of raw pickles; the error below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise _pickle_error(path, exc) from exc
    source = source_from_state_dict(_flat_state_dict(obj, path), kind="file", name=path.stem + ".safetensors")
    source.path = path
    return source


def _pickle_error(path: Path, exc: Exception) -> InputError:
    """Refused by ``weights_only`` (unsafe, or not a tensor state dict) or damaged: two different messages."""
    text = str(exc)
    corrupt = (
        f"{path} is not a readable PyTorch state dict ({{}}); it may be truncated or corrupt. "
        f"Check the download or save it again."
    )
    if not (isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text):
        return InputError(corrupt.format(f"{type(exc).__name__}: {' '.join(text.split())[:160]}"))
    safe_hint = (
        "mono-quant loads pickles only with weights_only=True, which never runs code from the file. If you "
        "trust the file, re-save it as a plain state dict (torch.save(model.state_dict(), path)) or as "
        "safetensors."
    )
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        name = found.group(1)
        module, _, attr = name.rpartition(".")
        if module in sys.modules and not hasattr(sys.modules[module], attr):
            # A name that does not exist is a cut or damaged file, not a request for code.
            return InputError(corrupt.format(f"it refers to {name}, which does not exist"))
        return InputError(
            f"{path} was refused: loading it needs {name}, so it is not a plain tensor state dict, and "
            f"unpickling it could run code from the file. {safe_hint}"
        )
    opcode = re.search(r"Unsupported operand (\d+)", text)
    what = f"pickle opcode {opcode.group(1)}" if opcode else "its contents"
    return InputError(
        f"{path} was refused: it is not a state dict written by torch.save (weights_only=True cannot read "
        f"{what}; it is a raw pickle, or damaged). {safe_hint}"
    )


def _flat_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise InputError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors).")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        key = bad[0]
        nested = isinstance(obj[key], Mapping)
        hint = (
            f" It looks nested: extract it first, e.g. torch.save(ckpt[{key!r}], 'weights.pt')."
            if nested
            else ""
        )
        raise InputError(
            f"{path} is not a flat state dict: entry {key!r} is a {type(obj[key]).__name__}, "
            f"not a tensor.{hint}"
        )
    return dict(obj)


def source_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, kind: str = "memory", name: str = "model.safetensors"
) -> Source:
    """A one-shard source over an in-memory state dict (tensors are not copied)."""
    infos = []
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise InputError(f"state dict entry {key!r} is a {type(t).__name__}, not a tensor.")
        infos.append(TensorInfo(key, t.dtype, tuple(t.shape)))
    return Source(kind, [Shard(name, infos, tensors=state_dict)])
