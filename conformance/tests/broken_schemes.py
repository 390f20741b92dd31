"""Deliberately broken schemes, each a realistic bug in a plugin, and the faithful scheme they break.

Not a test module: conftest.py loads it as ``broken_schemes`` for the tests that
feed these schemes to the runner (test_broken_plugins.py) and for the table of
broken plugins in docs/conformance/checks.md. ``broken_dist/`` holds one of them
as a real installed distribution (see test_installed_plugin.py).
"""

from __future__ import annotations

import torch

from mono_quant.core import (
    Capabilities,
    Granularity,
    GranuleLayout,
    MinMaxScheme,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    QuantDtype,
    asymmetric_qparams,
    get_dtype,
    granule_minmax,
)

EPS = float(torch.finfo(torch.float32).eps)
GOLDEN = Capabilities(golden="torch.ao")


def _range(dtype: QuantDtype) -> tuple[int, int]:
    assert dtype.qmin is not None and dtype.qmax is not None
    return dtype.qmin, dtype.qmax


class Control(MinMaxScheme):
    """The faithful asymmetric scheme: core's formula, nothing else."""

    name = "control"
    version = "1.0"
    capabilities = GOLDEN

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


class ScaleNotClamped(MinMaxScheme):
    """Symmetric, but the scale has no eps floor: a zero range gives scale 0."""

    name = "broken-scale-not-clamped"
    version = "1.0"
    capabilities = Capabilities(symmetric=True, golden="torch.ao")

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qmin, qmax = _range(dtype)
        amax = torch.maximum(-lo.clamp(max=0), hi.clamp(min=0))
        scale = amax / ((qmax - qmin) / 2)
        zp = 0 if dtype.signed else (qmin + qmax + 1) // 2
        return scale.float(), torch.full(scale.shape, zp, dtype=torch.int32)


class ZeroPointBeforeClamp(MinMaxScheme):
    """Asymmetric, with the zero-point computed from the scale before its eps floor (0/0 on zeros)."""

    name = "broken-zero-point-before-clamp"
    version = "1.0"
    capabilities = GOLDEN

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qmin, qmax = _range(dtype)
        lo0, hi0 = lo.clamp(max=0), hi.clamp(min=0)
        raw = (hi0 - lo0) / float(qmax - qmin)
        zp = torch.clamp(qmin - torch.round(lo0 / raw), qmin, qmax)
        return raw.clamp(min=EPS).float(), zp.to(torch.int32)


class PerChannelWrongDims(Control):
    """Per-channel ranges from ``x.reshape(C, -1)``: right shape, wrong elements unless axis is 0."""

    name = "broken-per-channel-wrong-dims"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(granularity, PerChannel):
            rows = x.reshape(x.shape[granularity.axis], -1)  # forgot x.movedim(axis, 0)
            return asymmetric_qparams(rows.amin(1).float(), rows.amax(1).float(), dtype, self.profile)
        return super().compute_scale_zero_point(x, dtype, granularity, name=name)


class Fp16TargetQuantized(Control):
    """Treats a float16/bfloat16 target like an integer one: a scale, and values snapped to it."""

    name = "broken-fp16-target-quantized"

    def compute_qparams(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
    ) -> QParams:
        qd = dtype if isinstance(dtype, QuantDtype) else get_dtype(dtype or "int8")
        if qd.is_float:
            scale = (x.abs().amax().float() / 127).clamp(min=EPS)
            zero = torch.zeros((), dtype=torch.int32)
            return QParams(scale, zero, dtype=qd.name, scheme=self.name, scheme_version=self.version)
        return super().compute_qparams(x, dtype, granularity, name=name)

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        qd = get_dtype(qparams.dtype)
        if qd.is_float and qparams.scale is not None:
            return (torch.round(x / qparams.scale) * qparams.scale).to(qd.torch_dtype)
        return super().quantize(x, qparams, name=name)


class ZeroPointOutsideRange(Control):
    """Overrides compute_qparams (so core's contract never runs): range without 0, zero-point unclamped."""

    name = "broken-zero-point-outside-range"

    def compute_qparams(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
    ) -> QParams:
        qd = dtype if isinstance(dtype, QuantDtype) else get_dtype(dtype or "int8")
        if qd.is_float:
            return super().compute_qparams(x, dtype, granularity, name=name)
        qmin, qmax = _range(qd)
        g = (granularity or PerTensor()).normalize(x.dim())
        lo, hi = granule_minmax(x, g, nondivisible=self.nondivisible)
        scale = ((hi - lo).float() / (qmax - qmin)).clamp(min=EPS)
        zp = (qmin - torch.round(lo.float() / scale)).to(torch.int32)
        return QParams(scale, zp, dtype=qd.name, granularity=g, scheme=self.name, scheme_version=self.version)


class ZeroPointOutsideRangeViaContract(Control):
    """The same bug through qparams_from_range: core's contract raises SchemeContractError."""

    name = "broken-zero-point-outside-range-contract"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qmin, qmax = _range(dtype)
        scale = ((hi - lo) / float(qmax - qmin)).clamp(min=EPS)
        return scale.float(), (qmin - torch.round(lo / scale)).to(torch.int32)


class OffByOneQmax(MinMaxScheme):
    """Divides the range by the number of levels, qmax - qmin + 1, instead of qmax - qmin."""

    name = "broken-off-by-one-qmax"
    version = "1.0"
    capabilities = GOLDEN

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qmin, qmax = _range(dtype)
        lo0, hi0 = lo.clamp(max=0), hi.clamp(min=0)
        scale = ((hi0 - lo0) / float(qmax - qmin + 1)).clamp(min=EPS)
        zp = torch.clamp(qmin - torch.round(lo0 / scale), qmin, qmax)
        return scale.float(), zp.to(torch.int32)


class InputMutated(Control):
    """'Cleans' its input in place: values unchanged on finite data, but the caller's tensor is written."""

    name = "broken-input-mutated"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x.nan_to_num_()
        return super().compute_scale_zero_point(x, dtype, granularity, name=name)


class _CustomRounding(Control):
    def round(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        qd = get_dtype(qparams.dtype)
        if qd.is_float or qparams.scale is None or qparams.zero_point is None:
            return super().quantize(x, qparams, name=name)
        qmin, qmax = _range(qd)
        layout = GranuleLayout.of(tuple(x.shape), qparams.granularity, nondivisible="pad")
        rows = layout.to_rows(x).float()
        scale = layout.qparams_to_rows(qparams.scale)
        zero_point = layout.qparams_to_rows(qparams.zero_point)
        q = self.round(rows * (1.0 / scale)) + zero_point
        return layout.from_rows(q.clamp(qmin, qmax).to(torch.int64).to(qd.torch_dtype))


class WrongRounding(_CustomRounding):
    """Rounds half away from zero (floor(|v| + 0.5)) where torch.ao rounds half to even."""

    name = "broken-wrong-rounding"

    def round(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sign(v) * torch.floor(v.abs() + 0.5)


class TruncatingRounding(_CustomRounding):
    """Truncates toward zero instead of rounding."""

    name = "broken-truncating-rounding"

    def round(self, v: torch.Tensor) -> torch.Tensor:
        return torch.trunc(v)


class NegativeAxisIgnored(Control):
    """Treats any negative axis as axis 0."""

    name = "broken-negative-axis-ignored"

    def compute_qparams(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
    ) -> QParams:
        if isinstance(granularity, PerChannel) and granularity.axis < 0:
            granularity = PerChannel(0)
        return super().compute_qparams(x, dtype, granularity, name=name)


class PartialGroupDropped(Control):
    """Under nondivisible='pad', the partial last group silently reuses the last full group's qparams."""

    name = "broken-partial-group-dropped"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(granularity, PerGroup) and self.nondivisible == "pad":
            axis, gs = granularity.axis, granularity.group_size
            full = x.shape[axis] // gs
            if x.shape[axis] % gs and full:
                head = x.narrow(axis, 0, full * gs)
                s, z = super().compute_scale_zero_point(head, dtype, granularity, name=name)
                last = (s.narrow(axis, full - 1, 1), z.narrow(axis, full - 1, 1))
                return torch.cat([s, last[0]], dim=axis), torch.cat([z, last[1]], dim=axis)
        return super().compute_scale_zero_point(x, dtype, granularity, name=name)


#: broken scheme -> (the check that must catch it, a phrase its message must carry)
DETECTIONS: list[tuple[type[MinMaxScheme], str, str]] = [
    (ScaleNotClamped, "check_zero_range_gives_finite_scale", "scale must be finite and > 0"),
    (ZeroPointBeforeClamp, "check_zero_range_gives_finite_scale", "zero_point must lie in"),
    (PerChannelWrongDims, "check_round_trip_error_within_half_scale", "exceeds scale/2"),
    (Fp16TargetQuantized, "check_float_targets_are_a_plain_cast", "must be a plain cast with no qparams"),
    (ZeroPointOutsideRange, "check_codes_and_zero_point_inside_qmin_qmax", "lies outside"),
    (
        ZeroPointOutsideRangeViaContract,
        "check_codes_and_zero_point_inside_qmin_qmax",
        "zero_point must lie in",
    ),
    (OffByOneQmax, "check_round_trip_error_within_half_scale", "exceeds scale/2"),
    (InputMutated, "check_input_is_not_mutated", "compute_qparams modified the float32 input tensor"),
    (WrongRounding, "check_qparams_match_torch_ao", "differs from torch.ao's"),
    (TruncatingRounding, "check_round_trip_error_within_half_scale", "exceeds scale/2"),
    (NegativeAxisIgnored, "check_qparam_shapes_and_dtypes", "for PerChannel(axis=-1)"),
    (PartialGroupDropped, "check_nondivisible_group_follows_policy", "nondivisible='pad'"),
]
