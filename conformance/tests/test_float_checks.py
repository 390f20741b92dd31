"""The float code checks: a correct FP8 scheme passes the whole suite; each broken one fails its check.

Every broken scheme below is the correct one with exactly one bug a plugin author
could write; the test names the check that must catch it and a phrase of its
message. They use core's FP8 dtypes, so they run with mono-quant-core alone.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mono_quant.conformance import run
from mono_quant.conformance._checks_float import format_gap
from mono_quant.core import (
    Capabilities,
    Granularity,
    MinMaxScheme,
    PerChannel,
    QParams,
    QuantDtype,
    float_code_qparams,
    get_dtype,
    granule_minmax,
)


class Fp8Twin(MinMaxScheme):
    """Absmax FP8 on core's rule, as the float section of the plugin guide writes it."""

    name = "twin-fp8"
    version = "1.0"
    capabilities = Capabilities(
        dtypes=("float8_e4m3fn", "float8_e5m2"),
        symmetric=True,
        profiles=("default", "compressed-tensors"),
        default_dtype="float8_e4m3fn",
        default_granularity=PerChannel(0),
    )

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return float_code_qparams(lo, hi, dtype, self.profile)


class ScaleTooCoarse(Fp8Twin):
    name = "fp8-scale-too-coarse"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale, zp = float_code_qparams(lo, hi, dtype, self.profile)
        return scale * 8, zp  # uses an eighth of the range


class RoundsDown(Fp8Twin):
    """Its own quantize shrinks values by 10% before the cast: not the nearest FP8 value."""

    name = "fp8-rounds-down"
    capabilities = Capabilities(
        dtypes=("float8_e4m3fn",), symmetric=True, affine=False, default_dtype="float8_e4m3fn"
    )

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        assert qparams.scale is not None
        from mono_quant.core import quantize as core_quantize

        shrunk = QParams(qparams.scale / 0.9, qparams.zero_point, qparams.dtype, qparams.granularity)
        return core_quantize(x, shrunk)

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        from mono_quant.core import dequantize as core_dequantize

        return core_dequantize(q, dataclasses.replace(qparams, affine=True), dtype=dtype)


class NoSaturation(Fp8Twin):
    """E5M2 codes by a plain cast of x / scale: beyond the range they become inf."""

    name = "fp8-no-saturation"
    capabilities = Capabilities(
        dtypes=("float8_e5m2",), symmetric=True, affine=False, default_dtype="float8_e5m2"
    )

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        assert qparams.scale is not None
        from mono_quant.core import GranuleLayout

        layout = GranuleLayout.of(tuple(x.shape), qparams.granularity)
        rows = layout.to_rows(x.float()) / layout.qparams_to_rows(qparams.scale)
        return layout.from_rows(rows.to(torch.float8_e5m2))

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        from mono_quant.core import dequantize as core_dequantize

        return core_dequantize(q, dataclasses.replace(qparams, affine=True), dtype=dtype)


class SwallowsNan(Fp8Twin):
    """Replaces NaN/inf by 0 before computing anything."""

    name = "fp8-swallows-nan"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = granule_minmax(torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), granularity)
        return float_code_qparams(lo.float(), hi.float(), dtype, self.profile)

    def _range_saw_every_element(self) -> bool:
        return True  # claims so, wrongly: the quantize pass then skips its own check


class WritesInput(Fp8Twin):
    name = "fp8-writes-input"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        result = super().compute_scale_zero_point(x, dtype, granularity, name=name)
        x.mul_(1.0)  # same values, but written in place
        return result[0], result[1]


def test_the_correct_fp8_scheme_passes_the_whole_suite() -> None:
    results = run([Fp8Twin()], max_examples=5)
    assert results.ok, "\n\n".join(r.message for r in results.failed[:3])
    floats = [r for r in results if r.check.startswith("check_float_") and r.status == "passed"]
    assert len(floats) >= 30  # 2 dtypes x 3 granularities x 2 profiles x 5 value checks, and more


@pytest.mark.parametrize(
    ("broken", "check", "phrase"),
    [
        (ScaleTooCoarse, "check_float_scale_uses_the_format_range", "coarser than the format needs"),
        (RoundsDown, "check_float_round_trip_within_half_the_format_gap", "exceeds half the gap"),
        (NoSaturation, "check_float_values_beyond_the_range_saturate", "saturation gives ±max_value"),
        (SwallowsNan, "check_float_nonfinite_input_raises", "without NonFiniteError"),
        (WritesInput, "check_float_input_is_left_alone_and_results_repeat", "the input was written to"),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_a_broken_float_scheme_fails_its_check(broken: type[Fp8Twin], check: str, phrase: str) -> None:
    results = run([broken()], checks=[check], max_examples=5)
    assert results.failed, f"{broken.name} passed {check}"
    assert any(phrase in r.message for r in results.failed), results.failed[0].message


def test_a_nonzero_zero_point_is_caught_by_core_and_reported() -> None:
    class Offset(Fp8Twin):
        name = "fp8-offset"

        def qparams_from_range(
            self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
        ) -> tuple[torch.Tensor, torch.Tensor]:
            scale, zp = float_code_qparams(lo, hi, dtype, self.profile)
            return scale, zp + 1

    results = run(
        [Offset()], checks=["check_float_qparams_and_codes_have_the_contracted_shapes"], max_examples=1
    )
    assert results.failed and "zero_point must be 0 everywhere" in results.failed[0].message


def test_the_gap_oracle_is_the_formats_spacing() -> None:
    e4m3, e5m2 = get_dtype("float8_e4m3fn"), get_dtype("float8_e5m2")
    y = torch.tensor([448.0, 256.0, 255.9, 1.0, 2.0**-6, 2.0**-7, 0.0], dtype=torch.float64)
    assert format_gap(y, e4m3).tolist() == [32.0, 32.0, 16.0, 0.125, 2.0**-9, 2.0**-9, 2.0**-9]
    assert format_gap(torch.tensor([57344.0, 2.0**-14, 0.0], dtype=torch.float64), e5m2).tolist() == [
        8192.0,
        2.0**-16,
        2.0**-16,
    ]
