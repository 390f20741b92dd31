"""quantization_error and quantize_with_error: signal and noise energies without a full reconstruction."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mono_quant.core import (
    Capabilities,
    MinMaxScheme,
    NonFiniteError,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QParamsError,
    QuantDtype,
    Scheme,
    asymmetric_qparams,
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


class _Asym(MinMaxScheme):
    name, version = "core-test-error-asym", "0"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


class _CountingOneCall(_Asym):
    """An asymmetric scheme with its own one-call path: core's, counted, then widened codes marked."""

    name = "core-test-one-call"

    def __init__(self) -> None:
        self.calls = 0

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        self.calls += 1
        codes, qp = super().quantize_tensor(x, dtype, granularity, name=name, pack=pack)
        return codes.clamp(max=100), qp  # a difference quantize_with_error must show


def test_quantize_with_error_goes_through_a_scheme_s_own_quantize_tensor() -> None:
    scheme = _CountingOneCall()
    x = torch.linspace(-1.0, 1.0, 64).reshape(4, 16)
    codes, qp, (signal, noise) = quantize_with_error(scheme, x, "int8", PerChannel(0), name="w")
    assert scheme.calls == 1
    assert int(codes.max()) == 100  # the override's codes, not core's fused ones (which reach 127)
    assert (signal, noise) == quantization_error(x, codes, qp)


def test_core_s_own_path_is_bit_identical_to_quantize_tensor_and_fused(asym: Scheme) -> None:
    x = torch.randn(300, 1000, generator=torch.Generator().manual_seed(6))
    codes, qp, (signal, _) = quantize_with_error(asym, x, "int8", PerChannel(0))
    ref_codes, ref_qp = asym.quantize_tensor(x, "int8", PerChannel(0))
    assert codes.dtype == ref_codes.dtype and torch.equal(codes, ref_codes) and qp.equals(ref_qp)
    assert signal == pytest.approx(quantization_error(x, codes, qp)[0], rel=1e-6)


class _UnregisteredCodebook(_Asym):
    """A non-affine scheme no plugin registers: codes are the affine codes, decoded with a shift."""

    name = "core-test-unregistered-codebook"
    capabilities = Capabilities(affine=False)

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        return (super().dequantize(q, replace(qparams, affine=True), name=name) + 1.0).to(dtype)

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        return super().quantize(x, replace(qparams, affine=True), name=name)


def test_quantize_with_error_decodes_non_affine_codes_with_the_scheme_itself() -> None:
    scheme = _UnregisteredCodebook()
    x = torch.zeros(2, 8)
    _, qp, (signal, noise) = quantize_with_error(scheme, x, "int8", PerTensor())
    assert not qp.affine
    assert (signal, noise) == (0.0, 16.0)  # every value decodes 1.0 off: the scheme's dequantize was used


def test_a_parameter_that_requires_grad_is_quantized_like_its_values(asym: Scheme) -> None:
    values = torch.randn(4, 8, generator=torch.Generator().manual_seed(8))
    param = torch.nn.Parameter(values.clone(), requires_grad=True)
    codes, qp, energies = quantize_with_error(asym, param, "int8", PerChannel(0))
    ref_codes, ref_qp, ref_energies = quantize_with_error(asym, values, "int8", PerChannel(0))
    assert torch.equal(codes, ref_codes) and qp.equals(ref_qp) and energies == ref_energies
    assert qp.scale is not None and not qp.scale.requires_grad
    assert param._version == 0 and torch.equal(param.detach(), values)
