from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mono_quant.cli._atomic as atomic
from mono_quant.cli._atomic import Target, atomic_output, atomic_outputs, remove_stale_temps
from mono_quant.cli._errors import LeftoverWarning, OutputError
from mono_quant.cli._guard import check_output, foreign_content
from mono_quant.cli._options import MANIFEST


@pytest.fixture(params=["renameat2", "portable"])
def publishing(request, monkeypatch):
    """Every publishing test runs with Linux's renameat2 and with the portable fallbacks."""
    if request.param == "portable":
        monkeypatch.setattr(atomic, "_renameat2", lambda src, dst, flags: False)
    elif atomic._renameat2_fn is None:
        pytest.skip("this system has no renameat2")
    return request.param


def test_a_file_appears_only_when_the_block_succeeds(tmp_path, leftovers, publishing):
    target = tmp_path / "out.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"payload")
        assert not target.exists()
        assert tmp.parent.parent == tmp_path and tmp.parent.name.endswith(".mono-quant-tmp")
    assert target.read_bytes() == b"payload"
    assert leftovers(tmp_path) == []


def test_the_output_gets_the_usual_umask_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_output(tmp_path / "outdir", directory=True) as tmp:
            (tmp / "a").write_text("a")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "outdir").stat().st_mode) == 0o755


def _write_then_raise(target, exc, **kwargs):
    with atomic_output(target, **kwargs) as tmp:
        if tmp.is_dir():
            (tmp / "partial").write_bytes(b"partial")
        else:
            tmp.write_bytes(b"partial")
        raise exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("directory", [False, True])
def test_a_failure_or_interrupt_leaves_nothing(tmp_path, leftovers, exc, directory):
    target = tmp_path / "out"
    with pytest.raises(type(exc)):
        _write_then_raise(target, exc, directory=directory)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replacement_keeps_the_old_output(tmp_path, leftovers):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        _write_then_raise(target, RuntimeError(), force=True)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_folders_are_published_whole_with_a_manifest_and_replace_our_old_one(tmp_path, leftovers, publishing):
    target = tmp_path / "outdir"
    with atomic_output(target, directory=True) as tmp:
        (tmp / "stale.txt").write_text("old")
    with atomic_output(target, force=True, directory=True) as tmp:
        (tmp / "a.txt").write_text("a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        MANIFEST,
        "a.txt",
        "sub",
        "sub/b.txt",
    ]
    assert json.loads((target / MANIFEST).read_text())["files"] == {"a.txt": 1, "sub/b.txt": 1}
    assert leftovers(tmp_path) == []


def test_force_never_replaces_a_folder_holding_a_file_mono_quant_did_not_write(tmp_path, publishing):
    target = tmp_path / "outdir"
    with atomic_output(target, directory=True) as tmp:
        (tmp / "model.safetensors").write_text("ours")
    (target / "notes.txt").write_text("the user's")
    with pytest.raises(OutputError, match=r"notes\.txt, which mono-quant did not write there"):
        _write_then_raise(target, RuntimeError(), force=True, directory=True)
    assert (target / "notes.txt").read_text() == "the user's"


def test_force_never_replaces_a_folder_without_a_manifest(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "other-model.safetensors").write_bytes(b"x")
    with pytest.raises(OutputError, match=r"did not write this folder \(no \.mono-quant-output\.json\)"):
        check_output(target, force=True, directory=True)
    assert (target / "other-model.safetensors").read_bytes() == b"x"


def test_force_never_replaces_a_folder_whose_files_changed_since(tmp_path):
    target = tmp_path / "outdir"
    with atomic_output(target, directory=True) as tmp:
        (tmp / "config.json").write_text("{}")
    (target / "config.json").write_text('{"edited": true}')
    with pytest.raises(
        OutputError, match=r"config\.json changed since mono-quant wrote it \(2 bytes then, 16"
    ):
        check_output(target, force=True, directory=True)


def test_force_replaces_an_empty_folder(tmp_path, publishing):
    target = tmp_path / "outdir"
    (target / "empty-sub").mkdir(parents=True)
    with atomic_output(target, force=True, directory=True) as tmp:
        (tmp / "a").write_text("a")
    assert (target / "a").read_text() == "a" and not (target / "empty-sub").exists()


@pytest.mark.parametrize("kind", ["fifo", "socket", "symlink-to-file", "symlink-to-fifo", "dangling-symlink"])
@pytest.mark.parametrize("directory", [False, True])
def test_force_never_replaces_special_files_or_links(tmp_path, kind, directory):
    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(target))
        s.close()
    elif kind == "symlink-to-file":
        (tmp_path / "real").write_text("real")
        target.symlink_to(tmp_path / "real")
    elif kind == "symlink-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        target.symlink_to(tmp_path / "pipe")
    else:
        target.symlink_to(tmp_path / "nowhere")
    before = os.lstat(target)
    with pytest.raises(OutputError, match="mono-quant replaces only regular files and folders it wrote"):
        _write_then_raise(target, RuntimeError(), force=True, directory=directory)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if ".mono-quant-tmp" in p.name) == []


@pytest.mark.parametrize("where", ["cwd", "parent-of-cwd", "home", "root"])
def test_force_never_replaces_the_current_home_or_root_folder(tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    with atomic_output(work, directory=True) as tmp:  # even a folder mono-quant wrote
        (tmp / "a").write_text("a")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    target = {"cwd": work, "parent-of-cwd": tmp_path, "home": work, "root": Path("/")}[where]
    with pytest.raises(OutputError, match="mono-quant never replaces it"):
        check_output(target, force=True, directory=True)


def test_an_existing_output_needs_force(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match=r"already exists; pass force=True to replace it"):
        check_output(target, force=False, directory=False)


def test_the_input_is_never_an_output_nor_inside_an_input_folder(tmp_path):
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_output(src, force=True, directory=False, protect=[src])
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_output(tmp_path, force=True, directory=True, protect=[src])
    with pytest.raises(OutputError, match="is inside the input folder"):
        check_output(tmp_path / "q", force=False, directory=True, protect=[src, tmp_path])


def test_a_missing_output_folder_is_named(tmp_path):
    with pytest.raises(OutputError, match="does not exist; create it first"):
        check_output(tmp_path / "nope" / "out.bin", force=False, directory=False)


def test_a_file_where_a_folder_goes_is_refused(tmp_path):
    target = tmp_path / "out"
    target.write_text("file")
    with pytest.raises(OutputError, match="is a file but this output is a folder"):
        check_output(target, force=True, directory=True)


def test_an_unwritable_folder_is_an_output_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(
        OutputError, match=r"Permission denied \[errno 13\]; choose a writable output location"
    ):
        _write_then_raise(tmp_path / "out.bin", RuntimeError())


def test_an_oserror_inside_becomes_a_one_line_output_error(tmp_path, leftovers):
    with pytest.raises(OutputError, match=r"No space left on device \[errno 28\]; free some space"):
        _write_then_raise(tmp_path / "out.bin", OSError(errno.ENOSPC, "No space left on device"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("directory", [False, True])
def test_a_target_that_appears_during_the_run_is_kept_and_this_run_fails(tmp_path, publishing, directory):
    target = tmp_path / "out"
    theirs = target / "theirs" if directory else target

    def run_while_another_writer_publishes():
        with atomic_output(target, directory=directory) as tmp:
            (tmp / "mine" if directory else tmp).write_text("mine")
            theirs.parent.mkdir(exist_ok=True)  # another writer publishes first
            theirs.write_text("theirs")

    with pytest.raises(OutputError, match="appeared while this run was working"):
        run_while_another_writer_publishes()
    assert theirs.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_publish_itself_never_replaces(tmp_path, publishing):
    """Even past the checks, publishing a new target is a no-replace rename (the race's last word)."""
    for directory in (False, True):
        target = tmp_path / f"t{directory}"
        payload = tmp_path / f"p{directory}"
        if directory:
            target.mkdir()
            (target / "theirs").write_text("theirs")
            payload.mkdir()
        else:
            target.write_text("theirs")
            payload.write_text("mine")
        with pytest.raises(OSError) as info:
            atomic._publish_new(payload, target, directory)
        assert info.value.errno in (errno.EEXIST, errno.ENOTEMPTY)
        assert ((target / "theirs") if directory else target).read_text() == "theirs"


def test_two_targets_publish_together_or_not_at_all(tmp_path, publishing):
    out, report = tmp_path / "out.safetensors", tmp_path / "report.json"
    out.write_text("old output")
    targets = [Target(out, force=True), Target(report, force=True, role="report")]

    def run_whose_report_cannot_be_published():
        with atomic_outputs(targets) as (a, b):
            a.write_text("new output")
            b.write_text("{}")
            report.mkdir()  # the report cannot be published now

    with pytest.raises(OutputError, match="is a folder but this report is a file"):
        run_whose_report_cannot_be_published()
    assert out.read_text() == "old output"  # put back as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors", "report.json"]


def test_overlapping_targets_are_refused(tmp_path):
    def enter(targets):
        with atomic_outputs(targets):
            pass

    with pytest.raises(OutputError, match="overlap; give them separate paths"):
        enter([Target(tmp_path / "o", directory=True), Target(tmp_path / "o" / "r.json")])
    with pytest.raises(OutputError, match="overlap"):
        enter([Target(tmp_path / "x"), Target(tmp_path / "x", role="report")])


_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from mono_quant.cli._atomic import atomic_output
with atomic_output(Path(sys.argv[1]), directory=sys.argv[2] == "dir") as tmp:
    (tmp / "part").write_text("x") if tmp.is_dir() else tmp.write_text("x")
    print("READY", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_sigkilled_run_leaves_one_temporary_entry_that_the_next_run_removes(tmp_path, kind):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "out"), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    finally:
        proc.kill()
        proc.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and re.match(rf"^\.out\.[A-Za-z0-9]+-{proc.pid}-\w+\.mono-quant-tmp$", left[0])
    (tmp_path / "unrelated.mono-quant-tmp").write_text("not ours: no host-pid part")
    with (
        pytest.warns(LeftoverWarning, match=rf"left by an interrupted mono-quant run \(process {proc.pid}"),
        atomic_output(tmp_path / "other.bin") as tmp,
    ):
        tmp.write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.bin", "unrelated.mono-quant-tmp"]


def test_temporary_entries_of_live_processes_are_left_alone(tmp_path):
    with atomic_output(tmp_path / "out.bin") as tmp:
        live = tmp.parent
        assert remove_stale_temps(tmp_path) == []
        assert live.exists()
        # Another live process's entry (our parent process's pid) is not touched either.
        other = tmp_path / f".x.{atomic._HOST}-{os.getppid()}-abc{atomic.TEMP_MARKER}"
        other.mkdir()
        assert remove_stale_temps(tmp_path) == [] and other.exists()
        other.rmdir()
        tmp.write_text("done")


def test_foreign_content_names_special_files_inside_a_folder(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert foreign_content(tmp_path) == "it holds pipe, which is a FIFO (named pipe)"
