"""Reading safetensors with clear errors, and writing them tensor by tensor."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mono_quant.cli._errors import InputError

__all__ = [
    "DTYPE_NAMES",
    "StreamingWriter",
    "dtype_from_name",
    "read_safetensors",
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

    The header (names, shapes, offsets, metadata) must come first in the file
    but is only known at the end, so tensor data goes to a spill file next to
    ``path`` and :meth:`close` writes header + data into ``path``, fsyncs it and
    removes the spill file. Callers give ``path`` inside a temporary location
    (see :func:`~mono_quant.cli._atomic.atomic_output`); OSErrors propagate.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self.metadata: dict[str, str] = dict(metadata or {})
        self._body_path = path.with_name(path.name + ".data")
        self._entries: dict[str, dict[str, object]] = {}
        self._offset = 0
        self._body: BinaryIO | None = open(self._body_path, "wb")  # noqa: SIM115 - closed in close()/abort()

    @property
    def data_bytes(self) -> int:
        """Tensor bytes written so far."""
        return self._offset

    def add(self, name: str, tensor: torch.Tensor) -> int:
        """Append ``tensor`` under ``name``; returns its byte count."""
        if self._body is None:
            raise RuntimeError("the writer is closed")
        if name in self._entries:
            raise ValueError(f"tensor {name!r} written twice")
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot store")
        data = tensor_bytes(tensor)
        _write_all(self._body, data)
        size = len(data)
        self._entries[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [self._offset, self._offset + size],
        }
        self._offset += size
        return size

    def close(self) -> int:
        """Write the final file (header, then the data) and fsync it; returns its size."""
        if self._body is None:
            raise RuntimeError("the writer is closed")
        body, self._body = self._body, None
        body.close()
        header: dict[str, object] = {}
        if self.metadata:
            header["__metadata__"] = self.metadata
        header.update(self._entries)
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
        try:
            with open(self.path, "wb") as out, open(self._body_path, "rb") as src:
                out.write(len(raw).to_bytes(8, "little"))
                _write_all(out, memoryview(raw))
                out.flush()
                _copy(src, out, self._offset)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            self.abort()
            raise
        os.unlink(self._body_path)
        return 8 + len(raw) + self._offset

    def abort(self) -> None:
        """Close and remove whatever was written."""
        if self._body is not None:
            self._body.close()
            self._body = None
        for p in (self._body_path, self.path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _copy(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """Copy ``size`` bytes in the kernel where it can (copy_file_range), else through Python."""
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
        src.seek(done)
        dst.seek(0, os.SEEK_END)
        shutil.copyfileobj(src, dst, CHUNK)


#: errno values meaning "copy_file_range cannot do this here": fall back to read/write.
_NO_COPY_RANGE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
