"""Broken plugins for the properties of issue 10, each with the correct twin it was broken from.

Not a test module: conftest.py loads it as ``broken_properties``. Each broken scheme
is an ordinary plugin written against the public API with exactly one bug, and
subclasses its twin, which overrides nothing the bug touches. :data:`DETECTIONS` says
which property and check catch each one (the table in docs/conformance/checks.md is
checked against it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mono_quant.core import (
    DEFAULT_PROFILE,
    Capabilities,
    Granularity,
    GranuleLayout,
    MinMaxScheme,
    PerGroup,
    QParams,
    QuantDtype,
    Scheme,
    asymmetric_qparams,
    check_finite,
    get_dtype,
    granule_minmax,
    symmetric_qparams,
)
from mono_quant.core import pack as pack_codes


def _qrange(dtype: QuantDtype) -> tuple[int, int]:
    assert dtype.qmin is not None and dtype.qmax is not None
    return dtype.qmin, dtype.qmax


class AsymTwin(MinMaxScheme):
    """Asymmetric int8/uint8, golden: core's formula and nothing else."""

    name = "twin-asym"
    version = "1.0"
    capabilities = Capabilities(dtypes=("int8", "uint8"), golden="torch.ao")

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return asymmetric_qparams(lo, hi, dtype, self.profile)


class SymTwin(MinMaxScheme):
    """Symmetric int8/int16 with two profiles: core's formula under the scheme's own profile."""

    name = "twin-sym"
    version = "1.0"
    capabilities = Capabilities(dtypes=("int8", "int16"), symmetric=True, profiles=("default", "torchao"))

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return symmetric_qparams(lo, hi, dtype, self.profile)


class EveryDtypeTwin(AsymTwin):
    """Asymmetric for every affine integer dtype (``dtypes=None``)."""

    name = "twin-every-dtype"
    capabilities = Capabilities(dtypes=None, golden="torch.ao")


class Int4Twin(AsymTwin):
    """Asymmetric int4/uint4 (packed two per byte by mono-quant-int4's dtypes)."""

    name = "twin-int4"
    capabilities = Capabilities(dtypes=("int4", "uint4"), golden="torch.ao", default_dtype="int4")


# 1. Every entry point, every policy -------------------------------------------------


class FastPathSkipsFiniteCheck(AsymTwin):
    """A one-call fast path that builds qparams from the granule range itself, never checking it."""

    name = "broken-fast-path-skips-finite-check"

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        qd = dtype if isinstance(dtype, QuantDtype) else get_dtype(dtype or self.capabilities.default_dtype)
        if qd.is_float:
            return super().quantize_tensor(x, dtype, granularity, name=name, pack=pack)
        x = x.detach()
        g = granularity or self.capabilities.default_granularity
        layout = GranuleLayout.of(tuple(x.shape), g, nondivisible=self.nondivisible, name=name)
        lo, hi = granule_minmax(x, layout.granularity, nondivisible=self.nondivisible, name=name)
        scale, zero_point = self.qparams_from_range(lo.float(), hi.float(), qd)
        qp = QParams(
            scale, zero_point, dtype=qd.name, granularity=layout.granularity, scheme=self.name,
            scheme_version=self.version, profile=self.profile.name, compute_dtype=self.profile.compute_dtype,
        )  # fmt: skip
        qmin, qmax = _qrange(qd)
        rows = layout.to_rows(x.float()) * (1.0 / layout.qparams_to_rows(scale))
        codes = torch.clamp(torch.round(rows) + layout.qparams_to_rows(zero_point), qmin, qmax)
        out = layout.from_rows(codes.to(qd.torch_dtype))
        return (pack_codes(out, qd) if pack else out), qp


class FastPathAlwaysPads(AsymTwin):
    """A one-call fast path that pads a partial group whatever the nondivisible policy says."""

    name = "broken-fast-path-always-pads"

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        padding = self.configure(nondivisible="pad") if isinstance(granularity, PerGroup) else self
        return Scheme.quantize_tensor(padding, x, dtype, granularity, name=name, pack=pack)


# 2. No mutation -----------------------------------------------------------------------


class CanonicalizesHalfInputInPlace(AsymTwin):
    """Writes half-precision input back through float32 in place: same values, but the caller's tensor."""

    name = "broken-canonicalizes-half-input-in-place"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype in (torch.float16, torch.bfloat16):
            x.copy_(x.float())  # meant: canonical NaN payloads and signed zeros before the range pass
        return super().compute_scale_zero_point(x, dtype, granularity, name=name)


# 3. Dequantize values for every requested dtype ----------------------------------------


class DequantizesInTheRequestedDtype(AsymTwin):
    """Dequantizes with arithmetic in the requested dtype: right dtype, other values than a cast."""

    name = "broken-dequantizes-in-the-requested-dtype"

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        if qparams.is_float or qparams.scale is None or qparams.zero_point is None:
            return super().dequantize(q, qparams, dtype=dtype, name=name)
        layout = GranuleLayout.of(tuple(q.shape), qparams.granularity, nondivisible="pad", name=name)
        zero_point = layout.qparams_to_rows(qparams.zero_point).to(dtype)
        scale = layout.qparams_to_rows(qparams.scale).to(dtype)
        return layout.from_rows((layout.to_rows(q).to(dtype) - zero_point) * scale)


# 4. The grid is the dtype's grid ------------------------------------------------------


class EightBitGridForEveryDtype(SymTwin):
    """Symmetric with int8's step count whatever the dtype: int16 codes stay in [-128, 127]."""

    name = "broken-eight-bit-grid"
    capabilities = Capabilities(dtypes=("int8", "int16"), symmetric=True)

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        amax = torch.maximum(-lo.clamp(max=0), hi.clamp(min=0))
        scale = torch.clamp(amax / 127.5, min=self.profile.eps_for(lo.dtype))
        return scale.float(), torch.zeros(scale.shape, dtype=torch.int32)


# 5. Every declared profile is run -----------------------------------------------------


class ProfileNumbersReplaced(SymTwin):
    """Declares the torchao profile but computes every scale with the default profile's eps."""

    name = "broken-profile-numbers-replaced"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return symmetric_qparams(lo, hi, dtype, DEFAULT_PROFILE)


# 6. One path --------------------------------------------------------------------------


class FastPathRoundsHalfUp(AsymTwin):
    """A one-call fast path that rounds ties up (floor(v + 0.5)) where quantize rounds half to even."""

    name = "broken-fast-path-rounds-half-up"

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        qp = self.compute_qparams(x, dtype, granularity, name=name)
        qd = get_dtype(qp.dtype)
        if qp.is_float or qp.scale is None or qp.zero_point is None:
            return super().quantize_tensor(x, dtype, granularity, name=name, pack=pack)
        qmin, qmax = _qrange(qd)
        layout = GranuleLayout.of(tuple(x.shape), qp.granularity, nondivisible="pad", name=name)
        v = layout.to_rows(x.float()) * (1.0 / layout.qparams_to_rows(qp.scale))
        codes = torch.clamp(torch.floor(v + 0.5) + layout.qparams_to_rows(qp.zero_point), qmin, qmax)
        out = layout.from_rows(codes.to(qd.torch_dtype))
        return (pack_codes(out, qd) if pack else out), qp


# 7. No hidden state -------------------------------------------------------------------


class RunningMaxScale(AsymTwin):
    """Keeps the largest range it has seen and scales every later tensor by it (observer-style)."""

    name = "broken-running-max-scale"

    def __init__(self) -> None:
        self._seen = 0.0

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen = max(self._seen, float(torch.maximum(-lo, hi).max()))
        widest = torch.full_like(lo, self._seen)
        return asymmetric_qparams(torch.minimum(lo, -widest), torch.maximum(hi, widest), dtype, self.profile)


# 8. Dtypes the scheme claims but CI does not have -------------------------------------


class RangeFromTheContainer(EveryDtypeTwin):
    """Claims every integer dtype but takes the range from the code container (int8 for a 3-bit dtype)."""

    name = "broken-range-from-the-container"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        info = torch.iinfo(dtype.torch_dtype)
        container = QuantDtype("container", info.bits, info.min < 0, info.min, info.max, dtype.code_dtype)
        scale, zero_point = asymmetric_qparams(lo, hi, container, self.profile)
        return scale, zero_point.clamp(*_qrange(dtype))


# 9. Packing on every shape ------------------------------------------------------------


class PacksTheFlattenedCodes(Int4Twin):
    """A one-call fast path that packs the codes flattened: right on even rows, wrong across odd ones."""

    name = "broken-packs-the-flattened-codes"

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        codes, qp = super().quantize_tensor(x, dtype, granularity, name=name)
        qd = get_dtype(qp.dtype)
        if not pack or qd.packing is None:
            return codes, qp
        flat = pack_codes(codes.reshape(-1), qd)
        shape = tuple(codes.shape[:-1]) + (math.ceil(codes.shape[-1] / 2),) if codes.dim() else (1,)
        out = torch.zeros(shape, dtype=flat.dtype)
        out.view(-1)[: flat.numel()] = flat[: out.numel()]
        return out, qp


# 10. Detection does not depend on names: every broken plugin here is renamed ten times;
# this one is caught only through the fixed inputs whose low end is a rounding tie.


class ZeroPointRoundsHalfUp(AsymTwin):
    """Rounds the zero-point with floor(v + 0.5): differs from torch.ao only when lo / scale is a tie."""

    name = "broken-zero-point-rounds-half-up"

    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale, _ = asymmetric_qparams(lo, hi, dtype, self.profile)
        qmin, qmax = _qrange(dtype)
        zero_point = qmin - torch.floor(torch.clamp(lo, max=0) / scale + 0.5)
        return scale, zero_point.clamp(qmin, qmax).to(torch.int32)


# 11. Codes that decode ----------------------------------------------------------------


class CodebookTwin(Scheme):
    """A 16-code codebook scheme on the suite's synthetic codebook dtype: 15 levels, code 15 = level 14."""

    name = "twin-codebook"
    version = "1.0"
    capabilities = Capabilities(
        dtypes=("synthetic-codebook4",), symmetric=False, affine=False, default_dtype="synthetic-codebook4"
    )
    reserved = 1.0  # what code 15, never chosen by quantize, decodes to

    def levels(self) -> torch.Tensor:
        return torch.cat([torch.arange(-7.0, 8.0) / 7, torch.tensor([self.reserved])])

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = granule_minmax(x, granularity, nondivisible=self.nondivisible, name=name)
        if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
            check_finite(x, name=name)
        scale = torch.clamp(torch.maximum(-lo, hi).float(), min=self.profile.eps_for(torch.float32))
        return scale, torch.zeros(scale.shape, dtype=torch.int32)

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        if qparams.is_float:
            return super().quantize(x, qparams, name=name)
        x = x.detach()
        check_finite(x, name=name)
        assert qparams.scale is not None
        layout = GranuleLayout.of(tuple(x.shape), qparams.granularity, nondivisible="pad", name=name)
        v = layout.to_rows(x.float()) * (1.0 / layout.qparams_to_rows(qparams.scale))
        levels = self.levels()[:15]
        codes = torch.bucketize(v.contiguous(), (levels[:-1] + levels[1:]) / 2)
        return layout.from_rows(codes.to(torch.uint8))

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        if qparams.is_float:
            return super().dequantize(q, qparams, dtype=dtype, name=name)
        assert qparams.scale is not None
        layout = GranuleLayout.of(tuple(q.shape), qparams.granularity, nondivisible="pad", name=name)
        values = self.levels()[layout.to_rows(q).to(torch.int64)] * layout.qparams_to_rows(qparams.scale)
        return layout.from_rows(values).to(dtype)


class CodebookWithANanCode(CodebookTwin):
    """Its reserved code 15 decodes to NaN: quantize never picks it, but a stored 15 dequantizes to NaN."""

    name = "broken-codebook-with-a-nan-code"
    reserved = math.nan


class AcceptsEveryIntegerDtype(EveryDtypeTwin):
    """Claims every affine integer dtype but accepts codebooks too: affine qparams labelled as a codebook."""

    name = "broken-accepts-every-integer-dtype"

    def supports_dtype(self, dtype: QuantDtype) -> bool:
        return True


# 12. Messages -------------------------------------------------------------------------


class OneCallWidensCodes(AsymTwin):
    """A one-call fast path that returns int32 codes: the same values, another dtype."""

    name = "broken-one-call-widens-codes"

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        codes, qp = super().quantize_tensor(x, dtype, granularity, name=name, pack=pack)
        return (codes if pack or qp.is_float else codes.to(torch.int32)), qp


class RefusesFloat64(AsymTwin):
    """Refuses float64 input outright (a clean input the non-finite check must not blame on NaN)."""

    name = "broken-refuses-float64"

    def compute_scale_zero_point(
        self, x: torch.Tensor, dtype: QuantDtype, granularity: Granularity, *, name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype == torch.float64:
            raise TypeError("float64 input is not supported")
        return super().compute_scale_zero_point(x, dtype, granularity, name=name)


@dataclass(frozen=True)
class Detection:
    """A broken plugin, the property it breaks and the check that must catch it.

    ``also`` lists the other checks that fail on the same plugin: run through the whole
    suite, exactly ``check`` and these fail (``None``: a bug every check that meets
    its input sees, not asserted). ``phrase`` is what the failure message must say.
    """

    number: int
    prop: str
    check: str
    broken: type[Scheme]
    twin: type[Scheme]
    phrase: str
    also: tuple[str, ...] | None = ()


VALUE_CHECKS = (
    "check_zero_range_gives_finite_scale",
    "check_round_trip_error_within_half_scale",
    "check_float_input_dtypes_are_accepted",
    "check_zero_dim_input_per_tensor",
    "check_nondivisible_group_follows_policy",
)

DETECTIONS: list[Detection] = [
    Detection(
        1, "every entry point, every policy", "check_nonfinite_input_follows_policy",
        FastPathSkipsFiniteCheck, AsymTwin, "accepted non-finite input under the 'raise' policy",
        also=("check_quantize_tensor_matches_two_steps",),
    ),
    Detection(
        1, "every entry point, every policy", "check_nondivisible_group_follows_policy",
        FastPathAlwaysPads, AsymTwin, "quantize_tensor(..., pack=False) under nondivisible='raise' accepted",
    ),
    Detection(
        2, "no mutation, every float dtype and layout", "check_input_is_not_mutated",
        CanonicalizesHalfInputInPlace, AsymTwin, "modified the float16 input tensor: it was written in place",
    ),
    Detection(
        3, "dequantize values for every requested dtype", "check_dequantize_to_each_float_dtype_is_a_cast",
        DequantizesInTheRequestedDtype, AsymTwin, "differs from scheme.dequantize(q, qp).to(d): values",
    ),
    Detection(
        4, "the grid is the dtype's grid", "check_codes_span_qmin_to_qmax",
        EightBitGridForEveryDtype, SymTwin, "a ramp across the granule's range must reach -32768",
        also=VALUE_CHECKS,
    ),
    Detection(
        5, "every declared profile is run", "check_qparams_follow_their_profile",
        ProfileNumbersReplaced, SymTwin, "profile 'torchao' floors the scale at eps",
        also=("check_zero_range_gives_finite_scale", "check_round_trip_error_within_half_scale"),
    ),
    Detection(
        6, "one path", "check_quantize_tensor_matches_two_steps",
        FastPathRoundsHalfUp, AsymTwin, "quantize_tensor(..., pack=False) differs from compute_qparams then",
    ),
    Detection(
        7, "no hidden state", "check_results_do_not_depend_on_call_history",
        RunningMaxScale, AsymTwin, "quantizing A again after B gave other results",
        also=(
            *VALUE_CHECKS, "check_codes_span_qmin_to_qmax", "check_qparams_follow_their_profile",
            "check_qparams_match_torch_ao",
        ),
    ),
    Detection(
        8, "dtypes claimed but not installed", "check_round_trip_error_within_half_scale",
        RangeFromTheContainer, EveryDtypeTwin, "synthetic-", also=None,
    ),
    Detection(
        9, "packing on every shape", "check_packed_codes_follow_the_declared_layout",
        PacksTheFlattenedCodes, Int4Twin, "is not the codes packed as",
        also=("check_quantize_tensor_matches_two_steps",),
    ),
    Detection(
        10, "detection does not depend on names", "check_qparams_match_torch_ao",
        ZeroPointRoundsHalfUp, AsymTwin, "differs from torch.ao's",
    ),
    Detection(
        11, "codes that decode", "check_every_code_decodes_to_a_finite_value",
        CodebookWithANanCode, CodebookTwin, "code 15 decodes to nan",
    ),
    Detection(
        11, "codes that decode", "check_unsupported_requests_are_refused",
        AcceptsEveryIntegerDtype, EveryDtypeTwin, "dtype 'synthetic-codebook4' is not claimed",
    ),
    Detection(
        12, "messages", "check_quantize_tensor_matches_two_steps",
        OneCallWidensCodes, AsymTwin, "the values are equal: only the dtype differs",
        also=("check_nondivisible_group_follows_policy",),
    ),
    Detection(
        12, "messages", "check_nonfinite_input_follows_policy",
        RefusesFloat64, AsymTwin, "on the clean input, before any non-finite value was put in", also=None,
    ),
]  # fmt: skip
