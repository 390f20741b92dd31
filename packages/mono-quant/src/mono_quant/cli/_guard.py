"""What an output may replace, and what it never touches: the checks behind ``--force``.

An existing target is replaced only with ``force``, and only if it is a regular
file, an empty folder, or a folder mono-quant wrote (its manifest,
:data:`~mono_quant.cli._options.MANIFEST`, lists exactly the files in it, with
their sizes). A symbolic link, a device, a FIFO or a socket is never replaced,
nor the current folder, an ancestor of it, the home folder or ``/``; nor an
input, or anything inside an input folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from mono_quant.cli._errors import OutputError
from mono_quant.cli._options import MANIFEST, option

__all__ = ["absolute", "check_output", "foreign_content"]


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
    ):
        if test(mode):
            return name
    return "a special file"


def absolute(path: Path) -> Path:
    """``path`` made absolute with its folder resolved, but its last component kept (a link stays a link)."""
    return Path(os.path.abspath(path)).parent.resolve() / Path(os.path.abspath(path)).name


def _protected_folders() -> list[tuple[Path, str]]:
    out = [(Path("/"), "the root folder")]
    with contextlib.suppress(OSError, RuntimeError):
        out.append((Path.home().resolve(), "your home folder"))
    with contextlib.suppress(OSError):
        out.append((Path.cwd().resolve(), "the current folder"))
    return out


def foreign_content(folder: Path) -> str | None:
    """Why replacing ``folder`` could destroy what mono-quant did not write, or ``None`` if it cannot.

    ``None`` for an empty folder (empty subfolders included) and for a folder whose
    manifest lists every file in it with its size.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> foreign_content(d) is None
    True
    >>> _ = (d / "notes.txt").write_text("mine")
    >>> foreign_content(d)
    'it holds notes.txt, and mono-quant did not write this folder (no .mono-quant-output.json)'
    """
    found: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs) + sorted(files):
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            mode = os.lstat(p).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                return f"it holds {rel}, which is {_kind(mode)}"
            if rel != MANIFEST:
                found[rel] = os.lstat(p).st_size
    manifest = folder / MANIFEST
    if not found and not manifest.exists():
        return None
    if not manifest.is_file():
        first = sorted(found)[0]
        return f"it holds {first}, and mono-quant did not write this folder (no {MANIFEST})"
    try:
        listed = json.loads(manifest.read_text())["files"]
        if not isinstance(listed, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its {MANIFEST} is not readable ({exc})"
    for rel, size in sorted(found.items()):
        if rel not in listed:
            return f"it holds {rel}, which mono-quant did not write there"
        if listed[rel] != size:
            return f"{rel} changed since mono-quant wrote it ({listed[rel]} bytes then, {size} now)"
    return None


def check_output(
    target: Path,
    *,
    force: bool,
    directory: bool,
    protect: Sequence[Path] = (),
    role: str = "output",
) -> None:
    """Refuse a target this run must not write: see the module's rules. Raises :class:`OutputError`.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "out.safetensors", force=False, directory=False)
    >>> check_output(d / "no" / "out.safetensors", force=False, directory=False)
    Traceback (most recent call last):
    ...
    mono_quant.cli._errors.OutputError: the output folder ... does not exist; create it first ...
    """
    path = absolute(target)
    for p in protect:
        src = absolute(p).resolve()
        if src == path.resolve() or path.resolve() in src.parents:
            raise OutputError(
                f"the {role} {target} would overwrite the input {p}; mono-quant never modifies its "
                f"input: choose another path."
            )
        if src.is_dir() and src in path.parents:
            raise OutputError(
                f"the {role} {target} is inside the input folder {p}; mono-quant never writes into its "
                f"input (a later run would copy it along as part of the model): choose a path outside it."
            )
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(
            f"the {role} folder {target.parent} does not exist; create it first or choose another path."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write the {role} {target}: its folder {target.parent} is not writable; "
            f"choose a writable location. Nothing was written."
        )
    if directory:
        here = path.resolve()
        for folder, what in _protected_folders():
            if here == folder or (what == "the current folder" and here in folder.parents):
                raise OutputError(
                    f"the {role} {target} is {what}"
                    + (" (or a folder above it)" if what == "the current folder" else "")
                    + f"; mono-quant never replaces it, not even with {option('force')}. "
                    f"Write to a new subfolder instead."
                )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    mode = st.st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise OutputError(
            f"the {role} {target} is {_kind(mode)}; mono-quant replaces only regular files and folders it "
            f"wrote, not even with {option('force')}. Choose another path."
        )
    if directory != stat.S_ISDIR(mode):
        want, have = ("a folder", "a file") if directory else ("a file", "a folder")
        raise OutputError(f"{target} is {have} but this {role} is {want}; remove it or choose another path.")
    if not force:
        raise OutputError(f"{target} already exists; pass {option('force')} to replace it.")
    if directory:
        why = foreign_content(path)
        if why is not None:
            raise OutputError(
                f"{target} exists and {why}; {option('force')} replaces only a folder mono-quant wrote "
                f"(or an empty one), so nothing of yours is deleted. Move it away or choose another path."
            )
