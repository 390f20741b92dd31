"""The scheme interface: what a scheme declares and the contract core enforces around it."""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass, field
from typing import Literal

import torch

from mono_quant.core._affine import cast_to_float_target, dequantize_affine, quantize_affine, raise_nonfinite
from mono_quant.core._dtypes import QuantDtype
from mono_quant.core._errors import (
    EmptyTensorError,
    InputDtypeError,
    RangeOverflowError,
    SchemeContractError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
)
from mono_quant.core._floatcodes import dequantize_float_codes, quantize_float_codes
from mono_quant.core._granularity import (
    Granularity,
    NonDivisiblePolicy,
    PerChannel,
    PerGroup,
    PerTensor,
)
from mono_quant.core._granules import GranuleLayout, granule_minmax
from mono_quant.core._profile import (
    DEFAULT_PROFILE,
    ComputeDtype,
    Profile,
    UnsignedSymmetricZeroPoint,
    resolve_profile,
)
from mono_quant.core._qparams import QParams

__all__ = ["Capabilities", "MinMaxScheme", "NonFinitePolicy", "Scheme", "check_input"]

NonFinitePolicy = Literal["raise"]
GranularityKind = Literal["per_tensor", "per_channel", "per_group"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Capabilities:
    """What a scheme claims; the conformance suite checks every claim.

    - ``dtypes``: quant dtype names it supports, or ``None`` for every registered
      affine integer dtype (codebook dtypes such as NF4, and float code dtypes such
      as FP8, must be named). Float targets (float16/bfloat16) are always
      supported: core handles them as a cast.
    - ``granularities``: the granularity kinds it supports.
    - ``nonfinite`` / ``nondivisible``: the policies it accepts; the first is its default.
    - ``profiles``: named profiles it accepts (``"custom"`` allows explicit parameters).
    - ``zero_exact``: 0.0 quantizes and dequantizes to exactly 0.0.
    - ``symmetric``: the zero-point follows the symmetric rule (0 signed, midpoint unsigned).
    - ``golden``: ``"torch.ao"`` if the default profile is bit-exact with torch.ao's observers.
    - ``affine``: core's affine quantize/dequantize apply (``False`` for a codebook).
    - ``default_dtype`` / ``default_granularity``: used when the caller names none.
    - ``max_step_ratio`` (affine schemes): the most a scale may exceed its granule's
      step on the dtype's whole grid, ``2 * max(|min|, |max|) / (qmax - qmin)``.
      1.0 for a scheme that uses every level (min/max schemes; scales rounded to a
      16-bit float too); 2.0 for scales rounded up to a power of two. The suite
      holds the round-trip error and the codes of a ramp to it.

    >>> Capabilities().granularities
    ('per_tensor', 'per_channel', 'per_group')
    """

    dtypes: tuple[str, ...] | None = None
    granularities: tuple[GranularityKind, ...] = ("per_tensor", "per_channel", "per_group")
    nonfinite: tuple[NonFinitePolicy, ...] = ("raise",)
    nondivisible: tuple[NonDivisiblePolicy, ...] = ("raise", "pad")
    profiles: tuple[str, ...] = ("default",)
    zero_exact: bool = True
    symmetric: bool = False
    golden: str | None = None
    affine: bool = True
    default_dtype: str = "int8"
    default_granularity: Granularity = field(default_factory=PerTensor)
    max_step_ratio: float = 1.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, for reports."""
        return {
            "dtypes": None if self.dtypes is None else list(self.dtypes),
            "granularities": list(self.granularities),
            "nonfinite": list(self.nonfinite),
            "nondivisible": list(self.nondivisible),
            "profiles": list(self.profiles),
            "zero_exact": self.zero_exact,
            "symmetric": self.symmetric,
            "golden": self.golden,
            "affine": self.affine,
            "default_dtype": self.default_dtype,
            "default_granularity": self.default_granularity.to_dict(),
            "max_step_ratio": self.max_step_ratio,
        }


def check_input(x: object, *, name: str | None = None, allow_0d: bool = True) -> torch.Tensor:
    """``x`` if it is a non-empty floating tensor, else the matching core error.

    >>> import torch
    >>> check_input(torch.ones(2)).shape
    torch.Size([2])
    """
    label = f"{name!r}" if name else "the input tensor"
    if not isinstance(x, torch.Tensor):
        raise InputDtypeError(f"{label} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dtype not in _FLOATS:
        raise InputDtypeError(
            f"{label} must be floating point (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}. Integer, bool and complex tensors are not quantized; "
            f"convert with .float() if the values are meant as real numbers."
        )
    if x.numel() == 0:
        raise EmptyTensorError(
            f"{label} is empty (shape {tuple(x.shape)}); a range needs at least one element."
        )
    return x


class Scheme(abc.ABC):
    """A named, versioned way of computing :class:`QParams`.

    Subclasses set ``name``, ``version`` and ``capabilities`` and implement
    :meth:`compute_scale_zero_point`. :meth:`compute_qparams` wraps it with the
    contract every scheme gets for free: input checks, float targets as a plain
    cast, dtype/granularity/axis/group-size checks, and a final check that the
    result is a finite positive float32 scale and an int32 zero-point inside
    ``[qmin, qmax]`` of the right shape. A non-affine scheme also overrides
    :meth:`quantize` and :meth:`dequantize` and sets ``affine=False``.

    One method per concept, and every caller goes through it:

    - qparams: :meth:`compute_scale_zero_point` (``qparams_from_range`` on a
      :class:`MinMaxScheme`), called by :meth:`compute_qparams`;
    - codes and values of non-affine qparams: :meth:`quantize` and :meth:`dequantize`
      (core's :func:`~mono_quant.core.quantize`/``dequantize`` look the scheme up by name);
    - qparams and codes in one call: :meth:`quantize_tensor`. It is the one-call
      path of checkpoints: :func:`~mono_quant.core.quantize_with_error`, and so
      ``mono-quant quantize``, calls an override of it. Its default is exactly
      :meth:`compute_qparams` then :meth:`quantize` (fused for affine qparams).

    Inputs are used detached (a ``requires_grad`` parameter is quantized like its
    values) and never written to.

    Options (profile, policies) are set with :meth:`configure`, which returns a
    new scheme; instances are otherwise immutable.
    """

    name: str = ""
    version: str = ""
    capabilities: Capabilities = Capabilities()
    profile: Profile = DEFAULT_PROFILE
    nonfinite: NonFinitePolicy = "raise"
    nondivisible: NonDivisiblePolicy = "raise"
    #: The distribution that registered this scheme (set by the plugin loader).
    distribution: str = ""

    def configure(
        self,
        *,
        profile: str | Profile | None = None,
        eps: float | Literal["keep"] | None = "keep",
        compute_dtype: ComputeDtype | None = None,
        unsigned_symmetric_zero_point: UnsignedSymmetricZeroPoint | None = None,
        nonfinite: NonFinitePolicy | None = None,
        nondivisible: NonDivisiblePolicy | None = None,
    ) -> Scheme:
        """A copy of this scheme with the given profile and policies.

        Raises :class:`UnsupportedOptionError` for a profile or policy the scheme
        does not declare.
        """
        caps = self.capabilities
        new = copy.copy(self)
        if profile is not None or eps != "keep" or compute_dtype or unsigned_symmetric_zero_point:
            base = self.profile if profile is None else profile
            resolved = resolve_profile(
                base,
                eps=eps,
                compute_dtype=compute_dtype,
                unsigned_symmetric_zero_point=unsigned_symmetric_zero_point,
            )
            if resolved.name not in caps.profiles:
                hint = " (explicit profile parameters need 'custom')" if resolved.name == "custom" else ""
                raise UnsupportedOptionError(
                    f"scheme {self.name!r} does not accept profile {resolved.name!r}{hint}; "
                    f"it accepts: {', '.join(caps.profiles)}."
                )
            new.profile = resolved
        for option, value, accepted in (
            ("nonfinite", nonfinite, caps.nonfinite),
            ("nondivisible", nondivisible, caps.nondivisible),
        ):
            if value is None:
                continue
            if value not in accepted:
                raise UnsupportedOptionError(
                    f"scheme {self.name!r} does not accept {option}={value!r}; "
                    f"it accepts: {', '.join(accepted)}."
                )
            setattr(new, option, value)
        return new

    def supports_dtype(self, dtype: QuantDtype) -> bool:
        """Whether this scheme accepts ``dtype`` (float targets always)."""
        if dtype.is_float:
            return True
        if self.capabilities.dtypes is None:
            return dtype.kind == "int" and dtype.affine
        return dtype.name in self.capabilities.dtypes

    def compute_qparams(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
    ) -> QParams:
        """Scale and zero-point of ``x`` for ``dtype`` at ``granularity``.

        ``name`` (the tensor's name in a checkpoint) goes into error messages.

        >>> import torch
        >>> from mono_quant.core import MinMaxScheme, PerChannel, asymmetric_qparams
        >>> class Asym(MinMaxScheme):
        ...     name, version = "asym-demo", "1"
        ...     def qparams_from_range(self, lo, hi, dtype):
        ...         return asymmetric_qparams(lo, hi, dtype, self.profile)
        >>> qp = Asym().compute_qparams(torch.randn(4, 8), "int8", PerChannel(0), name="w")
        >>> tuple(qp.scale.shape), qp.zero_point.dtype
        ((4,), torch.int32)
        """
        from mono_quant.core._registry import get_dtype

        qd = dtype if isinstance(dtype, QuantDtype) else get_dtype(dtype or self.capabilities.default_dtype)
        x = check_input(x, name=name).detach()  # a Parameter's values; never its graph
        if not self.supports_dtype(qd):
            supported = (
                "every affine integer dtype"
                if self.capabilities.dtypes is None
                else ", ".join(self.capabilities.dtypes)
            )
            raise UnsupportedDtypeError(
                f"scheme {self.name!r} does not support dtype {qd.name!r}; it supports: "
                f"{supported} (and the float targets float16, bfloat16)."
            )
        gran = granularity if granularity is not None else self.capabilities.default_granularity
        if qd.is_float:
            raise_nonfinite(x, name)  # the "raise" policy holds for casts too
            return QParams(
                None,
                None,
                dtype=qd.name,
                granularity=PerTensor(),
                scheme=self.name,
                scheme_version=self.version,
                profile=self.profile.name,
                compute_dtype=self.profile.compute_dtype,
                rounding=self.profile.rounding,
                affine=True,
            )
        if not isinstance(gran, (PerTensor, PerChannel, PerGroup)):
            raise UnsupportedGranularityError(
                f"granularity must be PerTensor(), PerChannel(axis) or PerGroup(axis, group_size); "
                f"got {gran!r}."
            )
        if gran.kind not in self.capabilities.granularities:
            raise UnsupportedGranularityError(
                f"scheme {self.name!r} does not support {gran}; it supports: "
                f"{', '.join(self.capabilities.granularities)}."
            )
        if x.dim() == 0 and not isinstance(gran, PerTensor):
            raise UnsupportedGranularityError(
                f"{gran} needs at least one dimension; "
                f"{repr(name) if name else 'the input tensor'} is 0-d. Use PerTensor()."
            )
        layout = GranuleLayout.of(tuple(x.shape), gran, nondivisible=self.nondivisible, name=name)
        result = self.compute_scale_zero_point(x, qd, layout.granularity, name=name)
        scale, zero_point = result[0], result[1]
        extra = dict(result[2]) if len(result) > 2 else {}
        self._check_result(scale, zero_point, qd, layout, x)
        return QParams(
            scale,
            zero_point,
            dtype=qd.name,
            granularity=layout.granularity,
            scheme=self.name,
            scheme_version=self.version,
            profile=self.profile.name,
            compute_dtype=self.profile.compute_dtype,
            rounding=self.profile.rounding,
            affine=self.capabilities.affine,
            extra=extra,
        )

    @abc.abstractmethod
    def compute_scale_zero_point(
        self,
        x: torch.Tensor,
        dtype: QuantDtype,
        granularity: Granularity,
        *,
        name: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
        """Return ``(scale float32, zero_point int32)`` shaped by ``granularity``.

        ``x`` is a checked, non-empty floating tensor; ``dtype`` an integer or float
        code dtype the scheme supports (a float code's zero-point is all 0);
        ``granularity`` has a non-negative axis that is in range and a group size
        that divides the axis (or ``self.nondivisible == "pad"``). Must not modify
        ``x``. A third element, a ``str -> str`` dict, goes into ``QParams.extra``
        (a two-level float format puts its ``tensor_scale`` there).
        """

    def quantize_tensor(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None = None,
        granularity: Granularity | None = None,
        *,
        name: str | None = None,
        pack: bool = False,
    ) -> tuple[torch.Tensor, QParams]:
        """QParams and codes of ``x`` in one call: ``(codes, qparams)``.

        With ``pack=True`` the codes are the dtype's packed storage. Equal to
        :meth:`compute_qparams` followed by :meth:`quantize` (and ``pack``), but
        fused into fewer passes over ``x`` for affine qparams. This is the
        method to override for a faster one-call path: every caller that wants
        codes and qparams together (:func:`~mono_quant.core.quantize_with_error`,
        and through it the CLI and checkpoint writers) calls the override. It
        must give exactly the two-step result, raise the same errors
        (``NonFiniteError``, ``GroupSizeError``, ...) and honour ``pack``.

        >>> import torch
        >>> from mono_quant.core import MinMaxScheme, PerChannel, symmetric_qparams
        >>> class Sym(MinMaxScheme):
        ...     name, version = "sym-demo", "1"
        ...     def qparams_from_range(self, lo, hi, dtype):
        ...         return symmetric_qparams(lo, hi, dtype, self.profile)
        >>> codes, qp = Sym().quantize_tensor(torch.randn(4, 8), "int8", PerChannel(0))
        >>> codes.dtype, tuple(qp.scale.shape)
        (torch.int8, (4,))
        """
        return self._quantize_tensor_default(x, dtype, granularity, name=name, pack=pack)

    def _quantize_tensor_default(
        self,
        x: torch.Tensor,
        dtype: str | QuantDtype | None,
        granularity: Granularity | None,
        *,
        name: str | None,
        pack: bool,
        energies: list[float] | None = None,
    ) -> tuple[torch.Tensor, QParams]:
        """Core's one-call path; fills ``energies`` where the fused affine loop can (``quantize_affine``)."""
        from mono_quant.core._packing import pack as pack_codes
        from mono_quant.core._registry import get_dtype

        x = check_input(x, name=name).detach()
        qp = self.compute_qparams(x, dtype, granularity, name=name)
        qd = get_dtype(qp.dtype)
        if qp.is_float:
            return cast_to_float_target(x, qd, name=name), qp
        if qd.is_float_code and qp.affine and type(self).quantize is Scheme.quantize:
            check = not self._range_saw_every_element()
            return quantize_float_codes(x, qp, qd, name=name, check_finite=check, pack=pack), qp
        if qp.affine and type(self).quantize is Scheme.quantize:
            # compute_qparams has checked x; the quantize pass need not look again
            # unless the scheme's range may ignore some elements (then it must check).
            check = not self._range_saw_every_element()
            codes = quantize_affine(x, qp, qd, name=name, check_finite=check, pack=pack, energies=energies)
            return codes, qp
        codes = self.quantize(x, qp, name=name)
        return (pack_codes(codes, qd) if pack else codes), qp

    def _range_saw_every_element(self) -> bool:
        """Whether :meth:`compute_qparams` has certainly looked at every element's value.

        True only for core's own :class:`MinMaxScheme` path (its per-granule min/max
        meets every NaN and inf), so a non-finite input has already raised and the
        quantize pass may skip its own check. Any override of either method voids it.
        """
        cls = type(self)
        return (
            cls.compute_qparams is Scheme.compute_qparams
            and cls.compute_scale_zero_point is MinMaxScheme.compute_scale_zero_point
        )

    def quantize(self, x: torch.Tensor, qparams: QParams, *, name: str | None = None) -> torch.Tensor:
        """Unpacked codes of ``x`` (affine, or float codes, by default); a float target is a cast."""
        from mono_quant.core._registry import get_dtype

        x = check_input(x, name=name).detach()
        qd = get_dtype(qparams.dtype)
        if qparams.is_float:
            return cast_to_float_target(x, qd, name=name)
        if qd.is_float_code:
            return quantize_float_codes(x, qparams, qd, name=name)
        return quantize_affine(x, qparams, qd, name=name)

    def dequantize(
        self,
        q: torch.Tensor,
        qparams: QParams,
        *,
        dtype: torch.dtype = torch.float32,
        name: str | None = None,
    ) -> torch.Tensor:
        """Floats back from codes ``q`` (affine, or float codes, by default); a float target is a cast."""
        from mono_quant.core._registry import get_dtype

        if qparams.is_float:
            return q.detach().to(dtype)
        qd = get_dtype(qparams.dtype)
        if qd.is_float_code:
            return dequantize_float_codes(q.detach(), qparams, qd, out_dtype=dtype, name=name)
        return dequantize_affine(q.detach(), qparams, out_dtype=dtype, name=name)

    def describe(self) -> dict[str, object]:
        """Name, version, distribution, profile, policies and capabilities as a dict."""
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "profile": self.profile.to_dict(),
            "nonfinite": self.nonfinite,
            "nondivisible": self.nondivisible,
            "capabilities": self.capabilities.to_dict(),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} v{self.version} profile={self.profile.name!r}>"

    def _check_result(
        self,
        scale: object,
        zero_point: object,
        dtype: QuantDtype,
        layout: GranuleLayout,
        x: torch.Tensor,
    ) -> None:
        problems: list[str] = []
        if not isinstance(scale, torch.Tensor) or not isinstance(zero_point, torch.Tensor):
            problems.append(
                f"must return two tensors, got {type(scale).__name__} and {type(zero_point).__name__}"
            )
        else:
            if scale.dtype != torch.float32:
                problems.append(f"scale must be float32, got {scale.dtype}")
            if zero_point.dtype != torch.int32:
                problems.append(f"zero_point must be int32, got {zero_point.dtype}")
            for what, t in (("scale", scale), ("zero_point", zero_point)):
                if tuple(t.shape) != layout.qparam_shape:
                    problems.append(
                        f"{what} must have shape {layout.qparam_shape} for {layout.granularity} "
                        f"on input shape {tuple(x.shape)}, got {tuple(t.shape)}"
                    )
                if t.device != x.device:
                    problems.append(f"{what} is on {t.device}, the input on {x.device}")
            if not problems:
                if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
                    problems.append("scale must be finite and > 0 everywhere")
                if dtype.is_float_code:
                    if bool(zero_point.any()):
                        problems.append(f"zero_point must be 0 everywhere for float codes ({dtype.name!r})")
                else:
                    assert dtype.qmin is not None and dtype.qmax is not None
                    if bool((zero_point < dtype.qmin).any()) or bool((zero_point > dtype.qmax).any()):
                        problems.append(f"zero_point must lie in [{dtype.qmin}, {dtype.qmax}]")
        if problems:
            raise SchemeContractError(
                f"scheme {self.name!r} ({self.distribution or type(self).__module__}) broke the "
                f"scheme contract for dtype {dtype.name!r}, {layout.granularity}: "
                + "; ".join(problems)
                + ". This is a bug in the scheme plugin; report it to its authors."
            )


def _raise_range_overflow(
    scale: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    compute: torch.dtype,
    profile: str,
    name: str | None,
) -> None:
    bad = ~torch.isfinite(scale.reshape(-1))
    first = int(torch.nonzero(bad)[0, 0])
    index = (
        tuple(int(i) for i in torch.unravel_index(torch.tensor(first), scale.shape)) if scale.dim() else ()
    )
    label = f"{name!r}" if name else "the input tensor"
    hint = (
        " The default profile computes in float32; use it for float16 input."
        if compute in (torch.float16, torch.bfloat16)
        else " Rescale the tensor."
    )
    raise RangeOverflowError(
        f"{label}: the range [{float(lo.reshape(-1)[first]):g}, {float(hi.reshape(-1)[first]):g}] of "
        f"granule {index} overflows {str(compute).replace('torch.', '')} under profile {profile!r}, "
        f"so no finite scale exists.{hint}"
    )


class MinMaxScheme(Scheme):
    """A scheme whose qparams depend only on each granule's min and max.

    It computes the per-granule range in one pass (:func:`granule_minmax`),
    applies the non-finite policy on that range (free: NaN and ±inf show up in
    it), converts it to the profile's compute dtype and hands it to
    :meth:`qparams_from_range`.
    """

    def compute_scale_zero_point(
        self,
        x: torch.Tensor,
        dtype: QuantDtype,
        granularity: Granularity,
        *,
        name: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
        """Per-granule min/max, non-finite policy, then :meth:`qparams_from_range` (and ``qparams_extra``)."""
        lo, hi = granule_minmax(x, granularity, nondivisible=self.nondivisible, name=name)
        if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
            raise_nonfinite(x, name)
        compute = self.profile.compute_dtype_for(x.dtype)
        lo_c, hi_c = lo.to(compute), hi.to(compute)
        scale, zero_point = self.qparams_from_range(lo_c, hi_c, dtype)
        if isinstance(scale, torch.Tensor) and not bool(torch.isfinite(scale).all()):
            _raise_range_overflow(scale, lo, hi, compute, self.profile.name, name)
        extra = self.qparams_extra(lo_c, hi_c, dtype)
        return (scale, zero_point, extra) if extra else (scale, zero_point)

    @abc.abstractmethod
    def qparams_from_range(
        self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale float32, zero_point int32)`` from per-granule ``lo``/``hi`` (compute dtype)."""

    def qparams_extra(self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype) -> dict[str, str]:
        """``str -> str`` facts for ``QParams.extra`` from the same ``lo``/``hi`` (none by default).

        A two-level float format returns its per-tensor scale here, ``{"tensor_scale": t.hex()}``
        (see :attr:`QParams.tensor_scale`); the tensor's range is the range of its granules.
        """
        return {}
