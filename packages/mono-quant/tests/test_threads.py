"""--threads: the blocks of each tensor on N threads give the same files, and bad counts are usage errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mono_quant.cli import main, quantize_checkpoint
from mono_quant.cli._errors import UsageError
from mono_quant.core import NonFiniteError


def run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    # Tensors of several 1 MiB blocks each (and a partial last block), so every thread gets work.
    g = torch.Generator().manual_seed(0)
    tensors = {f"layers.{i}.weight": torch.randn(1100, 1024, generator=g) for i in range(3)}
    tensors["layers.0.bias"] = torch.randn(1100, generator=g)
    path = tmp_path / "in.safetensors"
    save_file(tensors, path)
    return path


def _bytes(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize(
    ("scheme", "dtype", "extra"),
    [
        ("asymmetric", "int8", ()),
        ("symmetric", "int8", ("--granularity", "per-group", "--group-size", "128")),
        ("int4-asymmetric", None, ()),  # packed inside the quantize loop
        ("fp8", None, ()),
    ],
)
def test_every_thread_count_writes_the_same_bytes(
    tmp_path: Path, checkpoint: Path, scheme: str, dtype: str | None, extra: tuple[str, ...]
) -> None:
    args: list[object] = ["quantize", checkpoint, "--scheme", scheme, *extra, "-q"]
    if dtype:
        args += ["--dtype", dtype]
    outputs = {}
    for threads in (None, 1, 3):
        out = tmp_path / f"out-{threads}.safetensors"
        code, _, err = run(*args, "-o", out, *(() if threads is None else ("--threads", threads)))
        assert code == 0, err
        outputs[threads] = _bytes(out)
    assert outputs[1] == outputs[None] and outputs[3] == outputs[None]


def test_compressed_tensors_folders_are_the_same_on_threads(
    tmp_path: Path, checkpoint: Path, model_config: object
) -> None:
    model_config(checkpoint.parent)  # type: ignore[operator]
    one = tmp_path / "one"
    three = tmp_path / "three"
    for out, threads in ((one, 1), (three, 3)):
        code, _, err = run(
            "quantize", checkpoint, "-o", out, "--format", "compressed-tensors", "--threads", threads, "-q"
        )
        assert code == 0, err
    assert _bytes(one) == _bytes(three)


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_is_a_usage_error_naming_the_flag(
    tmp_path: Path, checkpoint: Path, bad: str
) -> None:
    code, _, err = run("quantize", checkpoint, "-o", tmp_path / "o.safetensors", "--threads", bad)
    assert code == 2
    assert "--threads" in err
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("bad", [0, -3, True, 2.0])
def test_the_api_refuses_a_bad_thread_count_with_its_value(
    tmp_path: Path, checkpoint: Path, bad: object
) -> None:
    with pytest.raises(UsageError, match=rf"threads must be a whole number of at least 1; got {bad!r}"):
        quantize_checkpoint(checkpoint, tmp_path / "o.safetensors", threads=bad)  # type: ignore[arg-type]


def test_torch_keeps_its_thread_count_after_a_run_and_after_a_failed_one(
    tmp_path: Path, checkpoint: Path
) -> None:
    before = torch.get_num_threads()
    quantize_checkpoint(checkpoint, tmp_path / "o.safetensors", threads=2)
    assert torch.get_num_threads() == before
    bad = tmp_path / "nan.safetensors"
    save_file({"w": torch.full((300, 1024), float("nan"))}, bad)
    with pytest.raises(NonFiniteError, match="'w'"):
        quantize_checkpoint(bad, tmp_path / "o2.safetensors", threads=2)
    assert torch.get_num_threads() == before
    assert not (tmp_path / "o2.safetensors").exists()


def test_jobs_fork_only_from_a_process_without_other_threads() -> None:
    import subprocess
    import sys
    import threading

    from mono_quant.cli._api import _job_start

    code = "from mono_quant.cli._api import _job_start; print(_job_start())"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert alone.strip() == ("fork" if sys.platform == "linux" else "spawn")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _job_start() == "spawn"  # a lock another thread holds would be copied locked
    finally:
        stop.set()
        other.join()
