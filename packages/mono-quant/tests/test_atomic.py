from __future__ import annotations

import errno
import os
import stat
import tempfile

import pytest

from mono_quant.cli._atomic import atomic_output, check_output
from mono_quant.cli._errors import OutputError


def test_a_file_appears_only_when_the_block_succeeds(tmp_path, leftovers):
    target = tmp_path / "out.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"payload")
        assert not target.exists()
        assert tmp.parent == tmp_path
    assert target.read_bytes() == b"payload"
    assert leftovers(tmp_path) == []


def test_the_output_gets_the_usual_umask_mode_not_a_private_one(tmp_path):
    target = tmp_path / "out.bin"
    old = os.umask(0o022)
    try:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def _write_then_raise(target, exc, **kwargs):
    with atomic_output(target, **kwargs) as tmp:
        tmp.write_bytes(b"partial")
        raise exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_or_interrupt_leaves_nothing(tmp_path, leftovers, exc):
    target = tmp_path / "out.bin"
    with pytest.raises(type(exc)):
        _write_then_raise(target, exc)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_a_failed_replacement_keeps_the_old_output(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        _write_then_raise(target, RuntimeError(), force=True)
    assert target.read_bytes() == b"old"


def test_folders_are_published_whole_and_replace_the_old_one(tmp_path, leftovers):
    target = tmp_path / "outdir"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_output(target, force=True, directory=True) as tmp:
        (tmp / "a.txt").write_text("a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert sorted(p.name for p in target.rglob("*")) == ["a.txt", "b.txt", "sub"]
    assert leftovers(tmp_path) == []


def test_an_existing_output_needs_force(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists; pass --force"):
        check_output(target, force=False, directory=False)


def test_the_input_is_never_an_output(tmp_path):
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_output(src, force=True, directory=False, protect=[src])
    with pytest.raises(OutputError, match="would overwrite the input"):
        check_output(tmp_path, force=True, directory=True, protect=[src])


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

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(
        OutputError, match=r"Permission denied \[errno 13\]; choose a writable output location"
    ):
        _write_then_raise(tmp_path / "out.bin", RuntimeError())


def test_an_oserror_inside_becomes_a_one_line_output_error(tmp_path, leftovers):
    with pytest.raises(OutputError, match=r"No space left on device \[errno 28\]; free some space"):
        _write_then_raise(tmp_path / "out.bin", OSError(errno.ENOSPC, "No space left on device"))
    assert leftovers(tmp_path) == []
