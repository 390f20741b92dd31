"""Atomic output: write into a temporary path beside the target, fsync, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mono_quant.cli._errors import OutputError

__all__ = ["TEMP_MARKER", "atomic_output", "check_output"]

#: Part of every temporary name, so leftovers of a killed process are recognisable.
TEMP_MARKER = ".mono-quant-tmp"


def check_output(target: Path, *, force: bool, directory: bool, protect: Sequence[Path] = ()) -> None:
    """Refuse an output that would overwrite an input, exists without ``force``, or has no folder.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "out.safetensors", force=False, directory=False)
    >>> check_output(d / "no" / "out.safetensors", force=False, directory=False)
    Traceback (most recent call last):
    ...
    mono_quant.cli._errors.OutputError: the output folder ... does not exist; create it first ...
    """
    resolved = target.resolve()
    for p in protect:
        src = p.resolve()
        if src == resolved or resolved in src.parents:
            raise OutputError(
                f"the output {target} would overwrite the input {p}; mono-quant never modifies its "
                f"input: choose another output path."
            )
    parent = resolved.parent
    if not parent.is_dir():
        raise OutputError(
            f"the output folder {target.parent} does not exist; create it first "
            f"or choose another output path."
        )
    if target.exists() or target.is_symlink():
        if not force:
            raise OutputError(f"{target} already exists; pass --force (force=True) to replace it.")
        if directory != target.is_dir():
            want, have = ("a folder", "a file") if directory else ("a file", "a folder")
            raise OutputError(
                f"{target} is {have} but this output is {want}; remove it or choose another output path."
            )


@contextmanager
def atomic_output(
    target: Path, *, force: bool = False, directory: bool = False, protect: Sequence[Path] = ()
) -> Iterator[Path]:
    """Yield a temporary file (or folder) path beside ``target``; publish it only on success.

    On success every file is fsynced and the temporary path is renamed onto
    ``target`` (``os.replace`` for a file; for a folder the old one, if any, is
    moved aside first and removed after). On any exception, KeyboardInterrupt
    included, the temporary path is removed and the exception propagates, so a
    failed or interrupted run leaves no partial output. OSErrors become
    :class:`OutputError` with a one-line message.
    """
    check_output(target, force=force, directory=directory, protect=protect)
    parent = target.resolve().parent
    prefix = f".{target.name}."
    try:
        # mkstemp/mkdtemp create private (0600/0700) paths; the output gets the usual umask mode.
        mask = os.umask(0o022)
        os.umask(mask)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMP_MARKER, dir=parent))
            os.chmod(tmp, 0o777 & ~mask)
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=TEMP_MARKER, dir=parent)
            os.close(fd)
            tmp = Path(name)
            os.chmod(tmp, 0o666 & ~mask)
    except OSError as exc:
        raise _output_error(exc, target) from exc
    try:
        yield tmp
        _fsync_tree(tmp)
        _publish(tmp, target.resolve(), directory)
        _fsync_dir(parent)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise _output_error(exc, target) from exc
        raise


def _output_error(exc: OSError, target: Path) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some space or write to another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable output location"
    else:
        hint = "check the output location"
    return OutputError(f"cannot write {target}: {reason} [errno {exc.errno}]; {hint}. Nothing was written.")


def _publish(tmp: Path, target: Path, directory: bool) -> None:
    if not directory or not target.exists():
        os.replace(tmp, target)
        return
    # No portable atomic swap of two folders: move the old one aside, then remove it.
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=TEMP_MARKER, dir=target.parent))
    aside.rmdir()
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for f in files:
                _fsync_file(Path(root) / f)
            _fsync_dir(Path(root))
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
