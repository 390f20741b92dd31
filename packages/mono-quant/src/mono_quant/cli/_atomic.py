"""Atomic, exclusive output: each target is written into a private temporary entry, then renamed into place.

The rules (``docs/cli.md`` states them word for word):

- What an existing target may be replaced with ``force`` is decided in
  :mod:`mono_quant.cli._guard` (a file, an empty folder, or a folder mono-quant
  wrote; never a link, a special file, the current, home or root folder).
- Publishing is a rename that happens only after every file is complete and
  fsynced. Without ``force`` it never replaces: a target that appeared while
  the run worked (another writer) makes this run fail, leaving that target as
  it is. With ``force`` the old target is swapped out atomically and removed
  only once every target of the run is published; if one of several targets
  (output, report) cannot be published, those already published are put back.
- Temporary entries are named ``.<name>.<host>-<pid>-<random>.mono-quant-tmp``:
  one per target, in the target's folder. A run killed with SIGKILL leaves
  that entry; the next run writing into the same folder removes entries whose
  process is gone and says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mono_quant.cli._errors import LeftoverWarning, OutputError
from mono_quant.cli._guard import absolute, check_output
from mono_quant.cli._interrupt import work_ended, work_starts
from mono_quant.cli._options import MANIFEST

__all__ = ["TEMP_MARKER", "Target", "atomic_output", "atomic_outputs", "remove_stale_temps"]

#: Suffix of every temporary entry, so leftovers of a killed process are recognisable.
TEMP_MARKER = ".mono-quant-tmp"

_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_TEMP_NAME = re.compile(
    r"^\..*\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[A-Za-z0-9_]+" + re.escape(TEMP_MARKER) + "$"
)


@dataclass(frozen=True)
class Target:
    """One path a run publishes: ``directory`` says whether it is a folder; ``role`` names it in messages."""

    path: Path
    directory: bool = False
    force: bool = False
    role: str = "output"


# --- temporary entries ---------------------------------------------------------------------------


def _temp_dir(target: Path) -> Path:
    prefix = f".{target.name[:100]}.{_HOST}-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=TEMP_MARKER, dir=target.parent))
    mask = os.umask(0o022)
    os.umask(mask)
    # mkdtemp is private (0700); a published folder gets the usual umask mode.
    os.chmod(tmp, 0o777 & ~mask)
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove temporary entries in ``folder`` left by mono-quant runs on this host whose process is gone.

    Only entries named like this module's temporary entries, owned by this user,
    are considered; each removal is reported with a :class:`LeftoverWarning`.
    Returns the names removed.
    """
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_NAME.match(name)
        if m is None or m["host"] != _HOST:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        p = folder / name
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if st.st_uid != os.getuid() or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue
        _remove(p)
        if not os.path.lexists(p):
            removed.append(name)
            warnings.warn(
                f"removed {p}, a temporary entry left by an interrupted mono-quant run (process {pid}, "
                f"which no longer exists).",
                LeftoverWarning,
                stacklevel=2,
            )
    return removed


# --- publishing ----------------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _libc_renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2_fn = _libc_renameat2()


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2``: True when done, False when this system or filesystem lacks it; else OSError."""
    if _renameat2_fn is None:
        return False
    if _renameat2_fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _publish_new(payload: Path, target: Path, directory: bool) -> None:
    """Rename ``payload`` to ``target`` only if nothing is there (EEXIST otherwise)."""
    if _renameat2(payload, target, _RENAME_NOREPLACE):
        return
    if not directory:
        try:
            os.link(payload, target)  # fails with EEXIST if target exists
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise
        else:
            os.unlink(payload)
            return
    else:
        os.mkdir(target)  # exclusive: EEXIST if another writer was first
        try:
            os.rename(payload, target)  # onto our own empty folder
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(target)
            raise
        return
    # No renameat2 and no hard links (some network or FUSE filesystems): check, then rename.
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(payload, target)


def _swap(payload: Path, target: Path, aside: Path) -> Callable[[], None]:
    """Replace ``target`` by ``payload``; return the undo. The old target ends at ``payload`` or ``aside``."""
    if _renameat2(payload, target, _RENAME_EXCHANGE):

        def swap_back() -> None:
            _renameat2(payload, target, _RENAME_EXCHANGE)

        return swap_back
    # No atomic exchange here: move the old target aside, then rename the new one in.
    os.rename(target, aside)
    try:
        os.rename(payload, target)
    except BaseException:
        os.rename(aside, target)
        raise

    def undo() -> None:
        _remove(target)
        os.rename(aside, target)

    return undo


class _Pending:
    """One target being written: its private temporary folder and what is yielded to the caller."""

    def __init__(self, spec: Target) -> None:
        self.spec = spec
        self.target = absolute(spec.path)
        self.tmp = _temp_dir(self.target)
        # A folder target is the temporary folder itself; a file is written inside it.
        self.payload = self.tmp if spec.directory else self.tmp / self.target.name
        if not spec.directory:
            self.payload.touch()
        # Where the fallback of an atomic exchange moves a replaced target (a name of the same pattern).
        self.aside = (
            self.tmp.with_name(self.tmp.name.removesuffix(TEMP_MARKER) + "old" + TEMP_MARKER)
            if spec.directory
            else self.tmp / (self.target.name + ".previous")
        )
        self.undo: Callable[[], None] | None = None

    def seal(self) -> None:
        """Write the manifest of a folder and fsync everything."""
        if self.spec.directory:
            _write_manifest(self.payload)
        _fsync_tree(self.payload)

    def publish(self, protect: Sequence[Path]) -> None:
        spec = self.spec
        appeared = OutputError(
            f"{spec.path} appeared while this run was working (another process wrote it); it was left as "
            f"it is and this run's {spec.role} was discarded. Nothing was written."
        )
        if not spec.force and os.path.lexists(self.target):
            raise appeared
        # Checked again now: the target may have changed while the run worked.
        check_output(spec.path, force=spec.force, directory=spec.directory, protect=protect, role=spec.role)
        if spec.force and os.path.lexists(self.target):
            self.undo = _swap(self.payload, self.target, self.aside)
        else:
            try:
                _publish_new(self.payload, self.target, spec.directory)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise appeared from exc
            target = self.target
            self.undo = lambda: _remove(target)
        _fsync_dir(self.target.parent)

    def discard(self) -> None:
        _remove(self.tmp)
        _remove(self.aside)


def _write_manifest(folder: Path) -> None:
    files = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            files[p.relative_to(folder).as_posix()] = p.stat().st_size
    data = {"written_by": "mono-quant", "files": dict(sorted(files.items()))}
    (folder / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")


@contextmanager
def atomic_outputs(targets: Sequence[Target], *, protect: Sequence[Path] = ()) -> Iterator[list[Path]]:
    """Yield one temporary path per target (a file, or a folder); publish them all only on success.

    Every target is checked before anything is created (:func:`check_output`),
    stale temporary entries of killed runs are removed from the targets' folders,
    and each target gets a private temporary folder beside it. On success every
    file is fsynced and the targets are published in order; if one cannot be,
    those already published are put back as they were. On any exception,
    KeyboardInterrupt included, the temporary entries are removed and the
    exception propagates, so a failed or interrupted run leaves no partial
    output. OSErrors become :class:`OutputError` with a one-line message.
    """
    for i, spec in enumerate(targets):
        for other in targets[:i]:
            a, b = absolute(spec.path), absolute(other.path)
            if a == b or (other.directory and b in a.parents) or (spec.directory and a in b.parents):
                raise OutputError(
                    f"the {spec.role} {spec.path} and the {other.role} {other.path} overlap; "
                    f"give them separate paths."
                )
    for spec in targets:
        check_output(spec.path, force=spec.force, directory=spec.directory, protect=protect, role=spec.role)
    work_starts()  # from here a signal raises KeyboardInterrupt, so the clean-up below runs
    for folder in sorted({absolute(s.path).parent for s in targets}):
        remove_stale_temps(folder)
    pending: list[_Pending] = []
    published: list[_Pending] = []
    try:
        try:
            for spec in targets:
                pending.append(_Pending(spec))
        except OSError as exc:
            raise _output_error(exc, targets[len(pending)].path) from exc
        yield [p.payload for p in pending]
        for p in pending:
            p.seal()
        for p in pending:
            p.publish(protect)
            published.append(p)
    except BaseException as exc:
        for p in reversed(published):
            if p.undo is not None:
                with contextlib.suppress(OSError):
                    p.undo()
        for p in pending:
            p.discard()
        work_ended(published=False)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            where = next((p.spec.path for p in pending if p not in published), targets[0].path)
            raise _output_error(exc, where) from exc
        raise
    work_ended(published=True)
    for p in pending:  # the old outputs that were replaced, and empty temporary folders
        p.discard()


@contextmanager
def atomic_output(
    target: Path, *, force: bool = False, directory: bool = False, protect: Sequence[Path] = ()
) -> Iterator[Path]:
    """:func:`atomic_outputs` for one target: yield its temporary file (or folder) path.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_output(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "out.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('done', ['out.txt'])
    """
    with atomic_outputs([Target(target, directory, force)], protect=protect) as (tmp,):
        yield tmp


def _output_error(exc: OSError, target: Path) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some space or write to another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a writable output location"
    else:
        hint = "check the output location"
    return OutputError(f"cannot write {target}: {reason} [errno {exc.errno}]; {hint}. Nothing was written.")


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
