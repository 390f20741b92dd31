"""A run split over processes or machines merges into exactly what a single run writes, byte for byte."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

from mono_quant.cli import main, merge_index, quantize_checkpoint
from mono_quant.cli._split import assign_shards, parts_folder

RECIPES = Path(__file__).resolve().parents[3] / "docs" / "recipes"


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def four_shards(tmp_path, model_config) -> Path:
    """A model folder in 4 shards of different sizes, with an index and a config."""
    folder = tmp_path / "model"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    for k in range(4):
        tensors = {f"layers.{k}.{m}.weight": torch.randn(64 + 32 * k, 128, generator=g) for m in ("q", "o")}
        tensors[f"layers.{k}.norm.weight"] = torch.ones(128)
        name = f"model-{k + 1:05d}-of-00004.safetensors"
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    model_config(folder)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@given(sizes=st.lists(st.integers(1, 10**6), min_size=1, max_size=20), count=st.integers(1, 6))
def test_every_file_goes_to_exactly_one_job_and_the_loads_are_balanced(sizes, count):
    files = {f"f{i}": s for i, s in enumerate(sizes)}
    jobs = assign_shards(files, count)
    assert sorted(n for job in jobs for n in job) == sorted(files)
    assert assign_shards(files, count) == jobs  # deterministic
    loads = [sum(files[n] for n in job) for job in jobs]
    assert max(loads) - min(loads) <= max(sizes)  # greedy, largest first


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("fmt", ["native", "compressed-tensors"])
def test_a_split_run_merges_into_the_single_runs_bytes(tmp_path, four_shards, count, fmt):
    opts = {"scheme": "int4-symmetric", "format": fmt}
    single = quantize_checkpoint(four_shards, tmp_path / "single", **opts)
    for index in reversed(range(count)):  # any order
        quantize_checkpoint(four_shards, tmp_path / "split", num_shards=count, shard_index=index, **opts)
    merged = merge_index(tmp_path / "split")
    assert _files(tmp_path / "split") == _files(tmp_path / "single")
    assert not parts_folder(tmp_path / "split").exists()  # merged parts are removed
    assert [t.name for t in merged.tensors] == [t.name for t in single.tensors]
    assert merged.sqnr_db == single.sqnr_db and merged.output_file_bytes == single.output_file_bytes


def test_a_missing_part_is_named_and_nothing_is_written(tmp_path, four_shards):
    for index in (0, 2):
        assert (
            run("quantize", four_shards, "-o", tmp_path / "split", "--num-shards", 3, "--shard-index", index)[
                0
            ]
            == 0
        )
    code, _, err = run("merge-index", tmp_path / "split")
    assert code == 3 and "has 2 of the 3 parts; missing: 1" in err
    assert not (tmp_path / "split").exists()


def test_parts_of_different_runs_are_not_merged(tmp_path, four_shards):
    out = tmp_path / "split"
    quantize_checkpoint(four_shards, out, num_shards=2, shard_index=0, scheme="symmetric")
    quantize_checkpoint(four_shards, out, num_shards=2, shard_index=1, scheme="asymmetric")
    code, _, err = run("merge-index", out)
    assert code == 3 and "comes from another run than part 0" in err and not out.exists()


def test_split_options_that_cannot_work_are_usage_errors(tmp_path, four_shards, ckpt):
    cases = [
        (("--num-shards", 2), "go together"),
        (("--num-shards", 2, "--shard-index", 2), "must be in [0, 2)"),
        (("--num-shards", 5, "--shard-index", 0), "fewer than the 5 jobs"),
        (
            ("--num-shards", 2, "--shard-index", 0, "--report", tmp_path / "r.json"),
            "pass --report to merge-index",
        ),
    ]
    for extra, message in cases:
        code, _, err = run("quantize", four_shards, "-o", tmp_path / "out", *extra)
        assert code == 2 and message in err, (extra, err)
    code, _, err = run("quantize", ckpt, "-o", tmp_path / "x.safetensors", "--jobs", 2)
    assert code == 2 and "this input has 1 file(s)" in err


def test_jobs_runs_the_parts_in_a_process_pool_and_merges(tmp_path, four_shards):
    quantize_checkpoint(four_shards, tmp_path / "single", scheme="int4-asymmetric")
    code, out, err = run(
        "quantize", four_shards, "-o", tmp_path / "jobs", "--jobs", 2, "--scheme", "int4-asymmetric"
    )
    assert code == 0, err
    assert "merged from 2 parts" in out
    assert _files(tmp_path / "jobs") == _files(tmp_path / "single")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs", "model", "single"]


def test_the_slurm_array_recipe(tmp_path, four_shards):
    """docs/recipes/quantize-array.slurm, run as Slurm would run each task of the array, then the merge."""
    env = {**os.environ, "MONO_QUANT": f"{sys.executable} -m mono_quant", "SLURM_ARRAY_TASK_COUNT": "3"}
    out = tmp_path / "slurm"
    for task in range(3):
        subprocess.run(
            [
                "bash",
                str(RECIPES / "quantize-array.slurm"),
                str(four_shards),
                str(out),
                "--scheme",
                "symmetric",
            ],
            env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
            check=True,
            timeout=300,
        )
    assert run("merge-index", out, "-q")[0] == 0
    quantize_checkpoint(four_shards, tmp_path / "single", scheme="symmetric")
    assert _files(out) == _files(tmp_path / "single")


def test_the_ray_recipe(tmp_path, four_shards):
    """The Ray recipe of docs/scaling.md, on a local Ray instance."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote
        def part(index: int, count: int) -> int:
            quantize_checkpoint(four_shards, tmp_path / "ray", num_shards=count, shard_index=index)
            return index

        assert sorted(ray.get([part.remote(i, 3) for i in range(3)])) == [0, 1, 2]
    finally:
        ray.shutdown()
    merge_index(tmp_path / "ray")
    quantize_checkpoint(four_shards, tmp_path / "single")
    assert _files(tmp_path / "ray") == _files(tmp_path / "single")
