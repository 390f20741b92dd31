"""The compressed-tensors layout, checked against the compressed-tensors library's own code."""

from __future__ import annotations

import io
import json
import re
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import mono_quant.cli._plan as plan_module
from mono_quant.cli import RefusedError, dequantize_state_dict, main, quantize_checkpoint, quantize_state_dict
from mono_quant.cli._formats import compressed_tensors as ct
from mono_quant.cli._formats.compressed_tensors import pack_int32
from mono_quant.cli._tensor import QuantizedTensor
from mono_quant.core import Capabilities, MinMaxScheme, PerGroup, QuantDtype, get_dtype, symmetric_qparams

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ct_helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    ct_convert = pytest.importorskip("compressed_tensors.entrypoints.convert.converters")
    ct_quant = pytest.importorskip("compressed_tensors.quantization")


@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 40),
    bits=st.sampled_from([2, 4, 8]),
    data=st.data(),
)
def test_pack_int32_equals_compressed_tensors_pack_to_int32(rows, cols, bits, data):
    half = 1 << (bits - 1)
    values = data.draw(st.lists(st.integers(-half, half - 1), min_size=rows * cols, max_size=rows * cols))
    codes = torch.tensor(values, dtype=torch.int8).reshape(rows, cols)
    ours = pack_int32(codes, bits)
    assert torch.equal(ours, ct_helpers.pack_to_int32(codes, bits))
    assert torch.equal(ct_helpers.unpack_from_int32(ours, bits, torch.Size([rows, cols])), codes)


CASES = [
    ("int4-symmetric", "int4", "per-group", 128, (64, 256)),
    ("int4-asymmetric", "int4", "per-group", 32, (48, 96)),
    ("int4-asymmetric", "uint4", "per-group", 64, (40, 128)),
    ("int4-symmetric", "uint4", "per-channel", None, (24, 20)),  # a row of 20 is not a multiple of 8
    ("int4-asymmetric", "int4", "per-tensor", None, (8, 12)),
    ("symmetric", "int8", "per-channel", None, (64, 384)),
    ("asymmetric", "int8", "per-channel", None, (33, 6)),  # 33 zero-points packed along dim 0
    ("asymmetric", "uint8", "per-channel", None, (16, 64)),
    ("symmetric", "uint8", "per-tensor", None, (8, 16)),
]


@pytest.mark.parametrize(("scheme", "dtype", "gran", "gs", "shape"), CASES)
def test_compressed_tensors_decompresses_our_output_bit_for_bit(
    model_config, tmp_path, scheme, dtype, gran, gs, shape
):
    g = torch.Generator().manual_seed(1)
    sd = {
        "layer.proj.weight": torch.randn(*shape, generator=g) * 0.05 + 0.01,
        "layer.proj.bias": torch.randn(shape[0], generator=g),
        "layer.norm.weight": torch.ones(shape[1]),
        "emb.weight": torch.randn(10, shape[1], generator=g),
    }
    save_file(sd, tmp_path / "in.safetensors")
    model_config(tmp_path)
    out = tmp_path / "ct"
    opts = {"scheme": scheme, "dtype": dtype, "granularity": gran, "group_size": gs, "exclude": ["emb.*"]}
    opts["profile"] = "compressed-tensors"  # the default for this format; in memory too, to compare
    quantize_checkpoint(tmp_path / "in.safetensors", out, format="compressed-tensors", **opts)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    ct_quant.QuantizationConfig.model_validate(config)  # the block parses as compressed-tensors' own config
    stored = load_file(out / "model.safetensors")
    assert stored["layer.proj.weight_packed"].dtype == torch.int32
    assert "layer.proj.weight" not in stored
    theirs = ct_convert.CompressedTensorsDequantizer(out, dtype=torch.float32).process(dict(stored))
    ours = dequantize_state_dict(quantize_state_dict(sd, **opts))
    assert set(theirs) == set(sd)
    for name in sd:
        assert theirs[name].dtype == ours[name].dtype and torch.equal(theirs[name], ours[name]), name
    # The writer's own check decodes as compressed-tensors does.
    args = next(iter(config["config_groups"].values()))["weights"]
    assert torch.equal(ct.decode("layer.proj.weight", stored, args), theirs["layer.proj.weight"])


def test_symmetric_schemes_drop_the_zero_point_and_say_so(model_config, tmp_path):
    save_file({"a.weight": torch.randn(8, 128)}, tmp_path / "in.safetensors")
    model_config(tmp_path)
    quantize_checkpoint(
        tmp_path / "in.safetensors", tmp_path / "ct", scheme="int4-symmetric", format="compressed-tensors"
    )
    config = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    (group,) = config["config_groups"].values()
    assert group["targets"] == ["Linear"] and group["weights"]["symmetric"] is True
    assert group["weights"] | {"group_size": 128, "strategy": "group", "num_bits": 4} == group["weights"]
    assert "a.weight_zero_point" not in load_file(tmp_path / "ct" / "model.safetensors")


def test_a_folder_input_keeps_its_config_and_gains_quantization_config(tmp_path, sharded):
    out = tmp_path / "ct"
    quantize_checkpoint(
        sharded, out, scheme="symmetric", exclude=["embed.*", "*conv*"], format="compressed-tensors"
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "toy"
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert (out / "tokenizer.json").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["layers.0.fc.weight_packed"] == "model-00001-of-00002.safetensors"


@pytest.mark.parametrize(
    ("opts", "shape", "name", "match"),
    [
        ({"include": ["*"]}, (4, 8), "proj.kernel", "is not named \\*.weight"),
        ({"include": ["*"]}, (2, 4, 8), "proj.weight", "not 2-D"),
        (
            {"granularity": "per-group", "axis": 0, "group_size": 2},
            (4, 8),
            "proj.weight",
            "along the last axis",
        ),
        ({"granularity": "per-channel", "axis": 1}, (4, 8), "proj.weight", "per-channel along axis 0"),
        ({"dtype": "float16"}, (4, 8), "proj.weight", "float16"),
        ({"dtype": "int16"}, (4, 8), "proj.weight", "int16"),
    ],
)
def test_layouts_compressed_tensors_cannot_hold_are_refused_before_writing(
    model_config, tmp_path, opts, shape, name, match
):
    save_file({name: torch.randn(*shape)}, tmp_path / "in.safetensors")
    model_config(tmp_path)
    with pytest.raises(RefusedError, match=match):
        quantize_checkpoint(
            tmp_path / "in.safetensors",
            tmp_path / "ct",
            scheme="symmetric",
            format="compressed-tensors",
            **opts,
        )
    assert not (tmp_path / "ct").exists()


def test_zero_points_of_few_rows_match_compressed_tensors_packing():
    # With <= 8 rows the int4 zero-point packs into one int32 row. compressed-tensors
    # 0.20's unpack_from_int32(packed_dim=0) fails on that shape even for its own
    # pack_to_int32 output (a (1, G) tensor transposed is "contiguous" with stride 3),
    # so the layout is checked against its packer here.
    zp = torch.tensor([[-8, 3, 7], [0, -1, 5]], dtype=torch.int8)
    ours = pack_int32(zp.t().contiguous(), 4).t().contiguous()
    assert torch.equal(ours, ct_helpers.pack_to_int32(zp, 4, packed_dim=0))


class CodebookForTests(MinMaxScheme):
    """A non-affine 4-bit scheme (its own quantize/dequantize), as a third party would write one."""

    name, version = "codebook-for-tests", "0"
    capabilities = Capabilities(dtypes=("cb4", "int4"), affine=False, default_dtype="cb4")

    def qparams_from_range(self, lo, hi, dtype):
        return symmetric_qparams(lo, hi, get_dtype("int4"), self.profile)


_CB4 = QuantDtype("cb4", 4, True, -8, 7, "int8", affine=False)


@pytest.fixture
def codebook(monkeypatch):
    real_scheme, real_dtype = plan_module.get_scheme, plan_module.get_dtype
    scheme = CodebookForTests()
    monkeypatch.setattr(plan_module, "get_scheme", lambda n: scheme if n == scheme.name else real_scheme(n))
    monkeypatch.setattr(plan_module, "get_dtype", lambda n: _CB4 if n == "cb4" else real_dtype(n))
    return scheme


@pytest.mark.parametrize(
    ("dtype", "match"),
    [
        ("cb4", "dtype 'cb4' is a codebook \\(affine=False\\)"),
        ("int4", "scheme 'codebook-for-tests' is not affine"),
    ],
)
def test_a_non_affine_scheme_or_dtype_is_refused_with_exit_4_and_no_output(
    model_config, tmp_path, codebook, dtype, match
):
    save_file({"a.weight": torch.randn(8, 128)}, tmp_path / "in.safetensors")
    model_config(tmp_path)
    argv = ["quantize", str(tmp_path / "in.safetensors"), "-o", str(tmp_path / "ct")]
    argv += [
        "--scheme",
        codebook.name,
        "--dtype",
        dtype,
        "--format",
        "compressed-tensors",
        "--group-size",
        "32",
    ]
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 4
    assert re.search(match, err.getvalue()) and "Formats that can hold" in err.getvalue()
    assert "--format native" in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "in.safetensors"]


def test_an_encoding_that_would_decode_differently_is_refused(monkeypatch):
    qc = quantize_state_dict({"a.weight": torch.randn(8, 64)}, scheme="int4-symmetric", group_size=32)
    qt = qc["a.weight"]
    assert isinstance(qt, QuantizedTensor)
    ct.encode("a.weight", qt, symmetric=True)  # the honest case passes
    real = QuantizedTensor.dequantize

    def off_by_one_step(self, dtype=None):
        out = real(self, dtype).clone()
        out[3, 5] += 0.5
        return out

    monkeypatch.setattr(QuantizedTensor, "dequantize", off_by_one_step)
    with pytest.raises(RefusedError, match=r"1 of 512 differ; the first at index \(3, 5\)"):
        ct.encode("a.weight", qt, symmetric=True)
    assert isinstance(qt.qparams.granularity, PerGroup)


# --- the compressed-tensors profile against compressed-tensors' own functions --------------------


@given(
    rows=st.integers(1, 6),
    groups=st.integers(1, 3),
    bits=st.sampled_from([4, 8]),
    symmetric=st.booleans(),
    strategy=st.sampled_from(["tensor", "channel", "group"]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
    zero_rows=st.booleans(),
)
def test_the_compressed_tensors_profile_equals_compressed_tensors(
    rows, groups, bits, symmetric, strategy, dtype, seed, zero_rows
):
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize
    from compressed_tensors.quantization.utils import calculate_qparams

    from mono_quant.core import PerChannel, PerTensor, get_scheme

    gs = 16
    x = (torch.randn(rows, groups * gs, generator=torch.Generator().manual_seed(seed)) * 0.1 + 0.02).to(dtype)
    if zero_rows and rows > 1:
        x[0] = 0  # all-zero granules (not in asymmetric: compressed-tensors' zero-point is 0/0 there)
        if not symmetric:
            x[0, ::gs] = 0.5
    args = QuantizationArgs(
        num_bits=bits,
        type="int",
        symmetric=symmetric,
        strategy=strategy,
        group_size=gs if strategy == "group" else None,
    )
    if strategy == "group":
        view = x.unflatten(-1, (groups, gs))
        lo, hi = view.amin(-1), view.amax(-1)
        gran = PerGroup(-1, gs)
    elif strategy == "channel":
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        gran = PerChannel(0)
    else:
        lo, hi = x.amin(), x.amax()
        gran = PerTensor()
    scale, zp = calculate_qparams(lo, hi, args)
    theirs = ct_quantize(x, scale, zp, args, dtype=torch.int8)
    name = (
        ("symmetric" if symmetric else "asymmetric")
        if bits == 8
        else ("int4-symmetric" if symmetric else "int4-asymmetric")
    )
    scheme = get_scheme(name).configure(profile="compressed-tensors")
    codes, qp = scheme.quantize_tensor(x, "int8" if bits == 8 else "int4", gran)
    assert torch.equal(qp.scale.reshape(-1), scale.float().reshape(-1))
    assert torch.equal(qp.zero_point.reshape(-1), zp.to(torch.int32).reshape(-1))
    assert torch.equal(codes, theirs.reshape(codes.shape))


def test_an_all_zero_asymmetric_granule_gets_qmin_where_compressed_tensors_divides_0_by_0():
    from mono_quant.core import get_scheme

    scheme = get_scheme("int4-asymmetric").configure(profile="compressed-tensors")
    x = torch.zeros(2, 32, dtype=torch.bfloat16)
    x[1] = torch.linspace(-1, 1, 32)
    codes, qp = scheme.quantize_tensor(x, "int4", PerGroup(-1, 16))
    assert qp.zero_point[0].tolist() == [-8, -8]  # defined, in range
    assert torch.equal(scheme.dequantize(codes, qp)[0], torch.zeros(32))  # exact zeros back
