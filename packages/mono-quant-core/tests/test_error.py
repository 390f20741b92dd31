"""quantization_error and quantize_with_error: signal and noise energies without a full reconstruction."""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import (
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QParamsError,
    Scheme,
    dequantize,
    quantization_error,
    quantize_with_error,
)
from mono_quant.core._granularity import Granularity
from mono_quant.core._kernels import BLOCK_ELEMENTS


def _reference(x: torch.Tensor, codes: torch.Tensor, qp: QParams) -> tuple[float, float]:
    """The definition, in float64 over a full reconstruction."""
    a = x.to(torch.float32).double()
    d = a - dequantize(codes, qp, dtype=torch.float32).double()
    return float((a * a).sum()), float((d * d).sum())


CASES: list[tuple[tuple[int, ...], Granularity, str]] = [
    ((300, 1000), PerChannel(0), "int8"),  # several row blocks, a partial last one
    ((64, 96), PerChannel(1), "uint8"),  # rows are not a view: the full path
    ((8, 3000), PerGroup(1, 128), "int8"),  # padded last group: the full path
    ((16, 256), PerGroup(1, 32), "uint8"),
    ((5, 7, 11), PerTensor(), "int16"),
    ((40, 50), PerChannel(0), "int32"),  # int32 codes widen to int64: the full path
]


@pytest.mark.parametrize(("shape", "granularity", "dtype"), CASES)
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_energies_match_a_float64_sum_over_the_full_reconstruction(
    asym: Scheme, shape: tuple[int, ...], granularity: Granularity, dtype: str, x_dtype: torch.dtype
) -> None:
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=gen) * 3).to(x_dtype)
    scheme = asym.configure(nondivisible="pad")
    codes, qp = scheme.quantize_tensor(x, dtype, granularity)
    signal, noise = quantization_error(x, codes, qp)
    ref_signal, ref_noise = _reference(x, codes, qp)
    assert signal == pytest.approx(ref_signal, rel=1e-5)
    assert noise == pytest.approx(ref_noise, rel=1e-4)
    if dtype != "int32":  # int32 codes can hold half-precision input exactly
        assert noise > 0


def test_blocks_cover_every_row_exactly_once(asym: Scheme) -> None:
    # Rows longer than one block and a row count that leaves a partial block.
    rows = 2 * (BLOCK_ELEMENTS // 1000) + 3
    x = torch.ones(rows, 1000)
    x[:, 0] = -1.0
    codes, qp = asym.quantize_tensor(x, "int8", PerChannel(0))
    signal, _ = quantization_error(x, codes, qp)
    assert signal == float(x.numel())


def test_non_contiguous_input_gives_the_contiguous_result(asym: Scheme) -> None:
    x = torch.randn(200, 300, generator=torch.Generator().manual_seed(2)).t()
    codes, qp = asym.quantize_tensor(x, "int8", PerChannel(0))
    assert quantization_error(x, codes, qp) == quantization_error(x.contiguous(), codes, qp)


def test_exact_codes_have_zero_noise(asym: Scheme) -> None:
    x = torch.arange(-128, 128, dtype=torch.float32).reshape(4, 64) / 4
    scale, zero_point = torch.full((4,), 0.25), torch.zeros(4, dtype=torch.int32)
    qp = QParams(scale, zero_point, dtype="int8", granularity=PerChannel(0))
    codes = (x * 4).to(torch.int8)
    signal, noise = quantization_error(x, codes, qp)
    assert noise == 0.0
    assert signal == float((x.double() ** 2).sum())


def test_float_targets_compare_with_the_cast(asym: Scheme) -> None:
    x = torch.tensor([1.0, 1.0 + 2**-12])
    codes, qp = asym.quantize_tensor(x, "float16")
    _, noise = quantization_error(x, codes, qp)
    assert noise == pytest.approx(2.0**-24)


def test_codes_of_another_shape_are_refused(asym: Scheme) -> None:
    x = torch.randn(4, 8)
    codes, qp = asym.quantize_tensor(x, "int8", PerChannel(0))
    with pytest.raises(QParamsError, match=r"'w'.*expected \(4, 8\), got \(32,\)"):
        quantization_error(x, codes.reshape(-1), qp, name="w")


@pytest.mark.parametrize(("shape", "granularity", "dtype"), CASES)
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_quantize_with_error_equals_quantize_tensor_then_quantization_error(
    asym: Scheme,
    sym: Scheme,
    shape: tuple[int, ...],
    granularity: Granularity,
    dtype: str,
    x_dtype: torch.dtype,
    contiguous: bool,
) -> None:
    gen = torch.Generator().manual_seed(4)
    x = (
        (torch.randn(tuple(reversed(shape)), generator=gen) * 2)
        .to(x_dtype)
        .permute(*reversed(range(len(shape))))
    )
    if contiguous:
        x = x.contiguous()
    for scheme in (asym.configure(nondivisible="pad"), sym):
        if isinstance(granularity, PerGroup) and "pad" not in scheme.capabilities.nondivisible:
            continue
        codes, qp, (signal, noise) = quantize_with_error(scheme, x, dtype, granularity)
        ref_codes, ref_qp = scheme.quantize_tensor(x, dtype, granularity)
        assert torch.equal(codes, ref_codes) and qp.equals(ref_qp)
        ref_signal, ref_noise = quantization_error(x, ref_codes, ref_qp)
        assert signal == pytest.approx(ref_signal, rel=1e-6)
        assert noise == pytest.approx(ref_noise, rel=1e-5)


def test_quantize_with_error_covers_float_targets_and_other_profiles(asym: Scheme) -> None:
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    for scheme, dtype in ((asym, "float16"), (asym.configure(profile="torchao"), "int8")):
        codes, qp, energies = quantize_with_error(scheme, x, dtype, PerChannel(0))
        ref_codes, ref_qp = scheme.quantize_tensor(x, dtype, PerChannel(0))
        assert torch.equal(codes, ref_codes) and qp.equals(ref_qp)
        assert energies == quantization_error(x, ref_codes, ref_qp)


def test_quantize_with_error_refuses_non_finite_input(asym: Scheme) -> None:
    x = torch.ones(4, 8)
    x[2, 3] = float("inf")
    with pytest.raises(NonFiniteError, match=r"'w' holds 1 non-finite value.*index \(2, 3\)"):
        quantize_with_error(asym, x, "int8", PerChannel(0), name="w")
