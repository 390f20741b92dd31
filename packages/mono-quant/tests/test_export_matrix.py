"""What `--format compressed-tensors` writes for every installed scheme: what the scheme computed, or nothing.

Every scheme with every dtype it supports goes through `mono-quant quantize
--format compressed-tensors` on a small model folder: either compressed-tensors'
own decompressor decodes every weight to mono-quant's dequantize, bit for bit,
and the report's SQNR is the decoded file's, or the run exits 4, says which
format could hold it, and leaves no output.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mono_quant.cli import main
from mono_quant.cli._tensor import sqnr_db
from mono_quant.core import get_dtype, get_scheme, list_dtypes, list_schemes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ct_convert = pytest.importorskip("compressed_tensors.entrypoints.convert.converters")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "embed.weight": torch.randn(64, 128, generator=g),
            "layers.0.proj.weight": torch.randn(256, 128, generator=g) * 0.05,
            "layers.0.out.weight": torch.randn(128, 256, generator=g) * 0.05,
            "norm.weight": torch.ones(128),
        },
        folder / "model.safetensors",
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "toy"}))
    return folder


def _cases() -> list[tuple[str, str]]:
    out = []
    for scheme_name in list_schemes():
        scheme = get_scheme(scheme_name)
        for dtype in list_dtypes():
            if scheme.supports_dtype(get_dtype(dtype)):
                out.append((scheme_name, dtype))
    return out


@pytest.mark.parametrize(("scheme", "dtype"), _cases())
def test_every_scheme_and_dtype_is_written_exactly_or_refused(tmp_path, model, scheme, dtype):
    out = tmp_path / "out"
    argv = [
        "quantize",
        model,
        "-o",
        out,
        "--format",
        "compressed-tensors",
        "--scheme",
        scheme,
        "--dtype",
        dtype,
    ]
    code, _, err = run(*argv, "--report", tmp_path / "r.json", "-q")
    if code != 0:
        assert code == 4, err  # refused, not an internal or usage error
        assert "native" in err and not out.exists() and not (tmp_path / "r.json").exists(), err
        return
    rows = {t["name"]: t for t in json.loads((tmp_path / "r.json").read_text())["tensors"]}
    quantized = sorted(n for n, r in rows.items() if r["action"] == "quantized")
    assert quantized == ["layers.0.out.weight", "layers.0.proj.weight"]  # the Linear weights
    # The quantized modules' tensors only: with no model to read module types from, the converter
    # would take every ``*.weight`` of a float-quantized file for a quantized one.
    modules = tuple(n.removesuffix("weight") for n in quantized)
    stored = {k: v for k, v in load_file(out / "model.safetensors").items() if k.startswith(modules)}
    theirs = ct_convert.CompressedTensorsDequantizer(out, dtype=torch.float32).process(stored)
    original = load_file(model / "model.safetensors")
    for name in quantized:
        x = original[name].double()
        decoded = theirs[name].double()
        want = sqnr_db(float((x * x).sum()), float(((x - decoded) ** 2).sum()))
        got = rows[name]["sqnr_db"]
        # The report's number is the decoded file's (to the report's 4 decimals).
        assert (got == "inf" and math.isinf(want)) or abs(got - want) < 1e-3, (name, got, want)


@pytest.mark.parametrize(
    ("scheme", "dtype", "granularity"),
    [("fp8", "float8_e4m3fn", "per-tensor"), ("fp8", "float8_e4m3fn", "per-channel"), ("nvfp4", None, None),
     ("mxfp4", None, None)],
)  # fmt: skip
def test_float_formats_go_to_their_compressed_tensors_format(tmp_path, model, scheme, dtype, granularity):
    if scheme not in list_schemes():
        pytest.skip(f"{scheme} is not installed")
    argv = [
        "quantize",
        model,
        "-o",
        tmp_path / "out",
        "--format",
        "compressed-tensors",
        "--scheme",
        scheme,
        "-q",
    ]
    argv += ["--dtype", dtype] if dtype else []
    argv += ["--granularity", granularity] if granularity else []
    code, _, err = run(*argv)
    assert code == 0, err
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    expected = {"fp8": "float-quantized", "nvfp4": "nvfp4-pack-quantized", "mxfp4": "mxfp4-pack-quantized"}
    assert qc["format"] == expected[scheme] and qc["config_groups"]["group_0"]["weights"]["type"] == "float"
