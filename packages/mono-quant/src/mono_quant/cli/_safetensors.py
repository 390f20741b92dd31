"""Reading safetensors with clear errors, and writing them tensor by tensor."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mono_quant.cli._errors import InputError

__all__ = [
    "DTYPE_NAMES",
    "MAX_HEADER",
    "MAX_SLACK",
    "StreamingWriter",
    "TensorEntry",
    "dtype_from_name",
    "read_entries",
    "read_safetensors",
    "read_tensor",
]

#: torch dtype -> the dtype string of the safetensors header.
DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.uint16: "U16",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.uint32: "U32",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}
_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}

#: Bytes handed to one write() call: small enough to keep copies short-lived.
CHUNK = 16 << 20

#: Bytes asked of one read() call (some platforms refuse single reads of 2 GiB or more).
_READ_MAX = 1 << 30

#: Header padding always accepted in place (more is accepted up to 0.1 % of the data).
MAX_SLACK = 64 << 10

#: The largest header safetensors accepts (its MAX_HEADER_SIZE).
MAX_HEADER = 100_000_000


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype string.

    >>> dtype_from_name("BF16")
    torch.bfloat16
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(
            f"safetensors dtype {name!r} has no torch equivalent here; known: {', '.join(sorted(_BY_NAME))}."
        ) from None


@contextmanager
def read_safetensors(path: Path) -> Iterator[Any]:
    """``safe_open(path)`` whose failures become one-line :class:`InputError`.

    safe_open checks the header and that the data section covers the file
    exactly, so a truncated file or a header claiming more bytes than the file
    holds fails here, before anything is written.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; check the path.")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:
        raise InputError(
            f"{path} is not a readable safetensors file ({_one_line(exc)}); it may be truncated or "
            f"corrupt: re-export or re-download it."
        ) from exc
    with handle as f:
        yield f


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- reading tensor data: plain reads into tensor memory, no mmap ---------------------------


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header: dtype, shape and the absolute byte range of its data."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data in the file."""
        return self.end - self.begin


def read_entries(f: io.FileIO, path: Path) -> dict[str, TensorEntry]:
    """Parse the header of the safetensors file open as ``f`` (8-byte length, then JSON).

    Offsets in the file are relative to the end of the header; the entries hold
    absolute ones. Raises :class:`InputError` if the header cannot be read.
    Reading tensors without a copy needs a little-endian host (safetensors data
    is little-endian); a big-endian one raises ``RuntimeError``.
    """
    if sys.byteorder != "little":
        raise RuntimeError(
            "mono-quant reads safetensors data on little-endian hosts only; this one is big-endian."
        )
    f.seek(0)
    head = f.read(8) or b""
    size = int.from_bytes(head, "little") if len(head) == 8 else -1
    raw = (f.read(size) or b"") if 0 <= size <= MAX_HEADER else b""
    try:
        if len(raw) != size:
            raise ValueError("the header is cut short")
        header = json.loads(raw)
        start = 8 + size
        entries = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            begin, end = (int(x) for x in e["data_offsets"])
            if not 0 <= begin <= end:
                raise ValueError(f"{name!r} has data_offsets [{begin}, {end}]")
            shape = tuple(int(s) for s in e["shape"])
            entries[name] = TensorEntry(dtype_from_name(e["dtype"]), shape, start + begin, start + end)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"{path} is not a readable safetensors file ({_one_line(exc)}); it may have changed during "
            f"the run or be damaged."
        ) from exc
    return entries


def read_tensor(
    f: io.FileIO, name: str, entry: TensorEntry, path: Path, *, buffer: torch.Tensor | None = None
) -> torch.Tensor:
    """Read tensor ``name`` from ``f`` straight into tensor memory (no mmap, no extra copy).

    Without ``buffer`` the result owns a fresh allocation; with one (1-D uint8,
    at least ``entry.nbytes`` long) the result is a view of its start, valid
    until the buffer is read into again. Raises :class:`InputError` if the
    entry's byte range does not match its dtype and shape, or the file ends
    before the data does.
    """
    expected = math.prod(entry.shape) * entry.dtype.itemsize
    if entry.nbytes != expected:
        raise InputError(
            f"{name!r} in {path} is {DTYPE_NAMES[entry.dtype]} {list(entry.shape)}, so {expected} bytes, but "
            f"its header entry spans {entry.nbytes} bytes; the file is damaged."
        )
    if buffer is None:
        raw = torch.empty(entry.nbytes, dtype=torch.uint8)
    elif buffer.dtype != torch.uint8 or buffer.dim() != 1 or buffer.numel() < entry.nbytes:
        raise ValueError(
            f"the buffer for {name!r} must be 1-D uint8 of at least {entry.nbytes} bytes; got "
            f"{buffer.dtype} of shape {tuple(buffer.shape)}"
        )
    else:
        raw = buffer[: entry.nbytes]
    view = raw.numpy().data
    f.seek(entry.begin)
    done = 0
    while done < entry.nbytes:
        got = f.readinto(view[done : done + _READ_MAX])
        if not got:
            raise InputError(
                f"{name!r} in {path} cannot be read (the file ends {entry.nbytes - done} bytes before its "
                f"data does); the file may have changed during the run or be damaged."
            )
        done += got
    return raw.view(entry.dtype).reshape(entry.shape)


# --- writing -------------------------------------------------------------------------------


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of ``t`` (contiguous, on the CPU), without a copy where possible."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data.cast("B")


def _write_all(f: BinaryIO, data: memoryview) -> None:
    """Write ``data`` in chunks (the seam tests use to simulate a full disk)."""
    for start in range(0, len(data), CHUNK):
        f.write(data[start : start + CHUNK])


class StreamingWriter:
    """Writes one safetensors file tensor by tensor, holding one tensor at a time.

    The header (names, shapes, offsets, metadata) comes first in the file but is
    only known at the end, so ``reserve`` bytes are left for it: tensor data goes
    to ``<path>.data`` from byte ``8 + reserve`` on (``reserve`` rounded up to a
    multiple of 8, so the data stays 8-byte aligned). If the header fits,
    :meth:`close` writes it there, padded with spaces (which safetensors allows)
    to exactly ``reserve`` bytes, fsyncs and renames the file to ``path``: every
    byte is written once. If not, or if the padding would exceed both
    :data:`MAX_SLACK` and 0.1 % of the data, ``close`` writes ``path`` as the
    header then the data copied over (in the kernel where it can).
    ``path`` is only replaced at ``close``, so a reader still mapping the old
    file keeps its bytes. Callers give ``path`` inside a temporary location (see
    :func:`~mono_quant.cli._atomic.atomic_output`); OSErrors propagate, and a
    failed ``close`` leaves no file behind.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None, *, reserve: int = 0) -> None:
        if reserve < 0:
            raise ValueError(f"reserve must be >= 0 bytes, got {reserve}")
        self.path = path
        self.metadata: dict[str, str] = dict(metadata or {})
        self.reserve = min(-(-reserve // 8) * 8, MAX_HEADER)
        self._data_path = path.with_name(path.name + ".data")
        self._entries: dict[str, dict[str, object]] = {}
        self._offset = 0
        self._file: BinaryIO | None = open(self._data_path, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._file.seek(8 + self.reserve)

    @property
    def data_bytes(self) -> int:
        """Tensor bytes written so far."""
        return self._offset

    def add(self, name: str, tensor: torch.Tensor) -> int:
        """Append ``tensor`` under ``name``; returns its byte count.

        Raises ``ValueError`` for a name written twice or a dtype safetensors cannot store.
        """
        if self._file is None:
            raise RuntimeError("the writer is closed")
        if name in self._entries:
            raise ValueError(f"tensor {name!r} written twice")
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store")
        data = tensor_bytes(tensor)
        _write_all(self._file, data)
        size = len(data)
        self._entries[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [self._offset, self._offset + size],
        }
        self._offset += size
        return size

    def close(self) -> int:
        """Write the header, fsync, put the file at ``path`` and return its size.

        On any error (OSError included) everything written is removed and the error propagates.
        """
        if self._file is None:
            raise RuntimeError("the writer is closed")
        f, self._file = self._file, None
        header: dict[str, object] = {}
        if self.metadata:
            header["__metadata__"] = self.metadata
        header.update(self._entries)
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
        # In place when the header fits and its padding is a negligible part of the file;
        # a small file is cheaper to copy than to leave with a mostly blank header.
        slack = self.reserve - len(raw)
        fits = 0 <= slack <= max(MAX_SLACK, self._offset // 1000)
        try:
            with f:
                if fits:
                    raw += b" " * (self.reserve - len(raw))
                    f.seek(0)
                    _write_header(f, raw)
                    f.flush()
                    os.fsync(f.fileno())
            if fits:
                os.replace(self._data_path, self.path)
            else:
                self._assemble(raw)
        except BaseException:
            self.abort()
            raise
        return 8 + len(raw) + self._offset

    def _assemble(self, raw: bytes) -> None:
        """The header did not fit the reserve: write ``path`` as the header, then the data copied over."""
        with open(self.path, "wb") as out, open(self._data_path, "rb") as src:
            _write_header(out, raw)
            out.flush()
            src.seek(8 + self.reserve)
            _copy(src, out, self._offset)
            out.flush()
            os.fsync(out.fileno())
        os.unlink(self._data_path)

    def abort(self) -> None:
        """Close and remove whatever was written."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in (self._data_path, self.path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _write_header(f: BinaryIO, raw: bytes) -> None:
    """The 8-byte little-endian header length, then the header (through :func:`_write_all`)."""
    f.write(len(raw).to_bytes(8, "little"))
    _write_all(f, memoryview(raw))


def _copy(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """Copy ``size`` bytes from ``src``'s position to ``dst``'s, in the kernel where it can (copy_file_range).

    Falls back to copying through Python where copy_file_range is missing or refuses.
    """
    start = src.tell()
    done = 0
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        try:
            while done < size:
                n = copy_range(src.fileno(), dst.fileno(), size - done)
                if n == 0:
                    break
                done += n
        except OSError as exc:
            if done or exc.errno not in _NO_COPY_RANGE:
                raise
    if done < size:
        src.seek(start + done)
        dst.seek(0, os.SEEK_END)
        shutil.copyfileobj(src, dst, CHUNK)


#: errno values meaning "copy_file_range cannot do this here": fall back to read/write.
_NO_COPY_RANGE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
