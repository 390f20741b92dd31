from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open

from mono_quant.cli import InputError, UsageError, load_quantized, quantize_state_dict, save_quantized
from mono_quant.cli._formats import native
from mono_quant.cli._safetensors import StreamingWriter
from mono_quant.core import list_schemes

CASES = [
    ("symmetric", "int8", "per-channel", None),
    ("asymmetric", "uint8", "per-tensor", None),
    ("asymmetric", "int16", "per-group", 4),
    ("int4-symmetric", "int4", "per-group", 8),
    ("int4-asymmetric", "uint4", "per-channel", None),
    ("symmetric", "float16", None, None),
    ("symmetric", "bfloat16", None, None),
]


@pytest.mark.parametrize(("scheme", "dtype", "gran", "gs"), CASES)
def test_save_then_load_restores_codes_and_qparams_exactly(tmp_path, scheme, dtype, gran, gs):
    sd = {"w": torch.randn(6, 24), "w16": torch.randn(4, 16).to(torch.float16), "b": torch.randn(6)}
    qc = quantize_state_dict(sd, scheme=scheme, dtype=dtype, granularity=gran, group_size=gs)
    back = load_quantized(save_quantized(qc, tmp_path / "q.safetensors"))
    assert back.equals(qc)
    assert back["w16"].orig_dtype == torch.float16  # type: ignore[union-attr]
    assert back.metadata[native.KEY_FORMAT] == "native"


@given(
    rows=st.integers(1, 5),
    cols=st.integers(1, 9),
    dtype=st.sampled_from(["int4", "uint4", "int8", "uint8"]),
    gran=st.sampled_from(["per-tensor", "per-channel", "per-group"]),
)
def test_round_trip_holds_for_odd_shapes_and_every_granularity(tmp_path_factory, rows, cols, dtype, gran):
    scheme = "int4-asymmetric" if "4" in dtype else "asymmetric"
    gs = cols if gran == "per-group" else None
    qc = quantize_state_dict(
        {"w": torch.randn(rows, cols)}, scheme=scheme, dtype=dtype, granularity=gran, group_size=gs
    )
    path = save_quantized(qc, tmp_path_factory.mktemp("q") / "q.safetensors")
    assert load_quantized(path).equals(qc)


def test_packed_codes_are_stored_with_the_dtypes_packing(tmp_path):
    qc = quantize_state_dict({"w": torch.randn(4, 7)}, scheme="int4-symmetric", granularity="per-channel")
    path = save_quantized(qc, tmp_path / "q.safetensors")
    with safe_open(str(path), "pt") as f:
        stored = f.get_tensor("w::codes")
        entry = json.loads(f.metadata()["mono_quant.tensor:w"])
    assert stored.dtype == torch.uint8 and tuple(stored.shape) == (4, 4)  # 7 nibbles -> 4 bytes a row
    assert entry["quant_dtype"]["packing"] == {
        "bits": 4,
        "per_container": 2,
        "container": "uint8",
        "axis": -1,
        "order": "low_first",
        "offset": 8,
    }
    assert entry["shape"] == [4, 7] and entry["orig_dtype"] == "float32"


def _rewrite_metadata(path, change):
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.offset_keys()}
    change(meta)
    w = StreamingWriter(path, meta)
    for k, t in tensors.items():
        w.add(k, t)
    w.close()


def test_a_newer_format_version_is_refused_with_what_to_do(tmp_path):
    path = save_quantized(quantize_state_dict({"w": torch.randn(2, 4)}), tmp_path / "q.safetensors")
    _rewrite_metadata(path, lambda m: m.update({native.KEY_VERSION: "2"}))
    with pytest.raises(
        InputError, match=r"format version 2, newer than this mono-quant reads .*upgrade mono-quant"
    ):
        load_quantized(path)


def test_a_newer_qparams_version_is_refused(tmp_path):
    path = save_quantized(quantize_state_dict({"w": torch.randn(2, 4)}), tmp_path / "q.safetensors")

    def bump(meta):
        entry = json.loads(meta["mono_quant.tensor:w"])
        entry["qparams"]["format_version"] = "99"
        meta["mono_quant.tensor:w"] = json.dumps(entry)

    _rewrite_metadata(path, bump)
    with pytest.raises(Exception, match="newer than this mono-quant-core"):
        load_quantized(path)


def test_missing_scale_is_reported_as_damage(tmp_path):
    path = save_quantized(quantize_state_dict({"w": torch.randn(2, 4)}), tmp_path / "q.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.offset_keys() if k != "w::scale"}
    w = StreamingWriter(path, meta)
    for k, t in tensors.items():
        w.add(k, t)
    w.close()
    with pytest.raises(InputError, match="'w::scale' named in the metadata is missing"):
        load_quantized(path)


def test_a_plain_file_is_not_a_native_checkpoint(ckpt):
    with pytest.raises(InputError, match="not a mono-quant native checkpoint"):
        load_quantized(ckpt)


def test_names_with_the_reserved_separator_are_refused(tmp_path):
    with pytest.raises(UsageError, match="reserves"):
        save_quantized(quantize_state_dict({"a::b": torch.randn(2, 4)}), tmp_path / "q.safetensors")


@pytest.mark.skipif("nf4" not in list_schemes(), reason="the example nf4 plugin is not installed")
def test_a_third_party_non_affine_scheme_round_trips(tmp_path):
    qc = quantize_state_dict({"w": torch.randn(4, 64)}, scheme="nf4", group_size=32)
    back = load_quantized(save_quantized(qc, tmp_path / "q.safetensors"))
    assert back.equals(qc)
    assert torch.equal(back["w"].dequantize(), qc["w"].dequantize())  # type: ignore[union-attr]


@pytest.mark.parametrize("scheme", ["fp8", "nvfp4", "mxfp4"])
def test_float_codes_store_no_zero_point_and_round_trip_exactly(tmp_path, scheme):
    if scheme not in list_schemes():
        pytest.skip(f"{scheme} is not installed")
    from safetensors import safe_open

    qc = quantize_state_dict({"w.weight": torch.randn(64, 128)}, scheme=scheme)
    path = save_quantized(qc, tmp_path / "q.safetensors")
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["w.weight::codes", "w.weight::scale"]  # the zero-point is always 0
    back = load_quantized(path)
    assert back.equals(qc)
    assert torch.equal(back["w.weight"].dequantize(), qc["w.weight"].dequantize())  # type: ignore[union-attr]
