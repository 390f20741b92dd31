"""Registration checks: the plugin loads, its dtypes are valid, its scheme's claims add up."""

from __future__ import annotations

import copy
import math

import torch
from packaging.version import InvalidVersion, Version

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._oracle import code_difference, gran_text, normalized
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import (
    PROFILES,
    Capabilities,
    MonoQuantError,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantDtype,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    dequantize,
    get_dtype,
    get_scheme,
    list_dtypes,
    pack,
    quantize,
    unpack,
)

__all__: list[str] = []

_KINDS = ("per_tensor", "per_channel", "per_group")
_NONFINITE = ("raise",)
_NONDIVISIBLE = ("raise", "pad")
_GOLDEN = (None, "torch.ao")
#: One instance of each granularity kind that fits a (4, 8) input.
_INSTANCES: dict[str, PerTensor | PerChannel | PerGroup] = {
    "per_tensor": PerTensor(),
    "per_channel": PerChannel(-1),
    "per_group": PerGroup(-1, 4),
}


@conformance_check("distribution")
def check_distribution_loads(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """The distribution's entry points import, its hooks return valid data, and no name clashes."""
    if not subject.registered:
        raise CheckSkipped("in-process scheme objects are not loaded through entry points")
    if subject.problems:
        raise ConformanceError(
            f"{subject.distribution} {subject.version} did not load cleanly: " + "; ".join(subject.problems)
        )


def dtype_problems(d: QuantDtype) -> list[str]:
    """Why ``d`` is not a valid registry entry (empty when it is); independent of core's checks."""
    out: list[str] = []
    if d.kind == "float_code":
        return _float_code_problems(d)
    if d.kind == "float":
        if d.qmin is not None or d.qmax is not None:
            out.append("a float target has no qmin/qmax")
        if not d.torch_dtype.is_floating_point:
            out.append(f"a float target must cast to a floating dtype, not {d.torch_dtype}")
        return out
    if d.qmin is None or d.qmax is None:
        return ["an integer dtype needs qmin and qmax"]
    if not d.qmin < d.qmax:
        out.append(f"qmin ({d.qmin}) must be below qmax ({d.qmax})")
    lo, hi = (-(2 ** (d.bits - 1)), 2 ** (d.bits - 1) - 1) if d.signed else (0, 2**d.bits - 1)
    if d.qmin < lo or d.qmax > hi:
        out.append(f"[{d.qmin}, {d.qmax}] does not fit {d.bits} {'signed' if d.signed else 'unsigned'} bits")
    info = torch.iinfo(d.torch_dtype)
    if d.qmin < info.min or d.qmax > info.max:
        out.append(f"code dtype {d.torch_dtype} cannot hold [{d.qmin}, {d.qmax}]")
    if d.packing is not None:
        p = d.packing
        if p.bits != d.bits:
            out.append(f"packing.bits ({p.bits}) differs from bits ({d.bits})")
        if not (d.qmin + p.offset >= 0 and d.qmax + p.offset < 2**p.bits):
            out.append(f"packing offset {p.offset} does not map [{d.qmin}, {d.qmax}] into {p.bits} bits")
        if not out:
            codes = torch.arange(d.qmin, d.qmax + 1, dtype=torch.int64).to(d.torch_dtype)
            codes = torch.cat([codes, codes[:1]])  # an odd length when the level count is even
            back = unpack(pack(codes, d), d, tuple(codes.shape))
            if not torch.equal(back, codes):
                out.append("unpack(pack(codes)) does not give every code back")
    return out


def _float_code_problems(d: QuantDtype) -> list[str]:
    """Why a float code entry is not a consistent format, checked by decoding every code."""
    from mono_quant.core import decode_float_codes

    e, m, limit = d.exponent_bits, d.mantissa_bits, d.max_value
    if d.qmin is not None or d.qmax is not None:
        return ["a float code dtype has no qmin/qmax"]
    if e is None or m is None or limit is None:
        return ["a float code dtype needs exponent_bits, mantissa_bits and max_value"]
    every = torch.arange(2**d.bits, dtype=torch.int64).to(torch.uint8)
    codes = every if d.torch_dtype == torch.uint8 else every.view(d.torch_dtype)
    values = decode_float_codes(codes, d)
    finite = values[torch.isfinite(values)]
    out = []
    if float(finite.abs().max()) != limit:
        out.append(
            f"the largest finite code decodes to {float(finite.abs().max())!r}, not max_value {limit!r}"
        )
    if bool(torch.isinf(values).any()) != d.has_inf or bool(torch.isnan(values).any()) != d.has_nan:
        out.append(
            f"its codes decode to inf/NaN ({bool(torch.isinf(values).any())}/"
            f"{bool(torch.isnan(values).any())}), it declares has_inf={d.has_inf}, has_nan={d.has_nan}"
        )
    if d.packing is not None and not out:
        back = unpack(pack(codes, d), d, tuple(codes.shape))
        if not torch.equal(back, codes):
            out.append("unpack(pack(codes)) does not give every code back")
    return out


@conformance_check("distribution")
def check_registered_dtypes_are_valid(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Every dtype the distribution registers is consistent: range, bits, container, packing."""
    names = subject.dtypes
    if not names:
        raise CheckSkipped(f"{subject.distribution} registers no quant dtype")
    registered = set(list_dtypes())
    for name in names:
        if name not in registered:
            if subject.registered:
                raise ConformanceError(f"dtype {name!r} is registered by {subject.distribution} but unusable")
            continue  # an in-process scheme's unregistered claim fails the capabilities check
        d = get_dtype(name)
        problems = dtype_problems(d)
        if problems:
            raise ConformanceError(f"dtype {name!r} is invalid: " + "; ".join(problems), dtype=name)


def capability_problems(subject: Subject) -> list[str]:
    """Claims in a scheme's capabilities that contradict each other or the registry."""
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    out: list[str] = []
    if not isinstance(caps, Capabilities):
        return [f"capabilities must be a Capabilities, got {type(caps).__name__}"]
    registered = set(list_dtypes())
    if caps.dtypes is not None:
        if not caps.dtypes:
            out.append("dtypes=() claims no dtype at all; use None for every integer dtype")
        for name in caps.dtypes:
            if name not in registered:
                out.append(f"claims dtype {name!r}, which no installed plugin registers")
            elif caps.affine and not getattr(get_dtype(name), "affine", True):
                out.append(f"is affine but claims the codebook dtype {name!r} (affine=False)")
    if not caps.granularities:
        out.append("claims no granularity")
    out += [f"unknown granularity kind {k!r}" for k in caps.granularities if k not in _KINDS]
    if not caps.nonfinite or any(p not in _NONFINITE for p in caps.nonfinite):
        out.append(f"nonfinite policies {caps.nonfinite!r} must be a non-empty subset of {_NONFINITE}")
    if not caps.nondivisible or any(p not in _NONDIVISIBLE for p in caps.nondivisible):
        out.append(
            f"nondivisible policies {caps.nondivisible!r} must be a non-empty subset of {_NONDIVISIBLE}"
        )
    if caps.nonfinite and scheme.nonfinite != caps.nonfinite[0]:
        out.append(
            f"default nonfinite policy is {scheme.nonfinite!r}, but capabilities list "
            f"{caps.nonfinite[0]!r} first"
        )
    if caps.nondivisible and scheme.nondivisible != caps.nondivisible[0]:
        out.append(
            f"default nondivisible policy is {scheme.nondivisible!r}, but capabilities list "
            f"{caps.nondivisible[0]!r} first"
        )
    if scheme.profile.name not in caps.profiles:
        out.append(
            f"its profile {scheme.profile.name!r} is not among the profiles it accepts {caps.profiles!r}"
        )
    for name in caps.profiles:
        if name != "custom" and name not in PROFILES:
            out.append(f"accepts unknown profile {name!r} (known: {', '.join(PROFILES)}, custom)")
    if caps.golden not in _GOLDEN:
        out.append(f"golden={caps.golden!r} is not a known profile to compare with ({_GOLDEN!r})")
    if caps.default_dtype not in registered:
        out.append(f"default dtype {caps.default_dtype!r} is not registered")
    elif not scheme.supports_dtype(get_dtype(caps.default_dtype)):
        out.append(f"default dtype {caps.default_dtype!r} is not among the dtypes it supports")
    ratio = getattr(caps, "max_step_ratio", 1.0)
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1.0):
        out.append(f"max_step_ratio={ratio!r} must be a finite number >= 1.0")
    if caps.default_granularity.kind not in caps.granularities:
        out.append(f"default granularity {gran_text(caps.default_granularity)} is not a kind it claims")
    for option, values in (("nonfinite", caps.nonfinite), ("nondivisible", caps.nondivisible)):
        for value in values:
            try:
                scheme.configure(**{option: value})  # type: ignore[arg-type]
            except MonoQuantError as exc:
                out.append(f"declares {option}={value!r} but configure() refuses it: {exc}")
    for name in caps.profiles:
        if name in PROFILES:
            try:
                scheme.configure(profile=name)
            except MonoQuantError as exc:
                out.append(f"declares profile {name!r} but configure() refuses it: {exc}")
    return out


@conformance_check("scheme")
def check_scheme_declares_name_version_and_capabilities(
    subject: Subject, case: Case, ctx: CheckContext
) -> None:
    """The scheme has a name, a PEP 440 version and capabilities consistent with the registry."""
    scheme = subject.get_scheme()
    problems: list[str] = []
    if not isinstance(scheme.name, str) or not scheme.name:
        problems.append("name must be a non-empty string")
    try:
        Version(str(scheme.version))
    except InvalidVersion:
        problems.append(f"version {scheme.version!r} is not a PEP 440 version")
    problems += capability_problems(subject)
    if subject.registered:
        found = get_scheme(scheme.name)
        if type(found) is not type(scheme):
            problems.append(f"get_scheme({scheme.name!r}) returns a {type(found).__name__}")
        if found.distribution != subject.distribution:
            problems.append(f"registered by {found.distribution!r}, not {subject.distribution!r}")
    if problems:
        raise ConformanceError(f"scheme {scheme.name!r} declares inconsistent facts: " + "; ".join(problems))


def _fits(g: PerTensor | PerChannel | PerGroup) -> tuple[int, ...]:
    """A 2-D shape the granularity ``g`` applies to."""
    if isinstance(g, PerGroup):
        shape = [3, 3]
        shape[g.axis % 2] = 2 * g.group_size
        return (shape[0], shape[1])
    return (3, 4)


@conformance_check("scheme")
def check_defaults_apply_when_nothing_is_named(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """compute_qparams(x) with no dtype or granularity uses the declared defaults."""
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    shape = _fits(caps.default_granularity)
    x = make_tensor(shape, kind="normal", seed=3)
    qp = scheme.compute_qparams(x)
    want = normalized(caps.default_granularity, len(shape))
    if qp.dtype != caps.default_dtype or qp.granularity != want:
        raise ConformanceError(
            f"with nothing named, qparams are for dtype {qp.dtype!r}, {gran_text(qp.granularity)}; the "
            f"declared defaults are {caps.default_dtype!r}, {gran_text(want)}",
            input=f"make_tensor({shape}, kind='normal', seed=3)",
        )


@conformance_check("scheme")
def check_unsupported_requests_are_refused(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """A dtype or granularity kind the scheme does not claim raises core's Unsupported* error."""
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    x = make_tensor((4, 8), seed=5)
    tried = 0
    default = caps.default_dtype
    for kind, g in _INSTANCES.items():
        if kind in caps.granularities:
            continue
        tried += 1
        try:
            scheme.compute_qparams(x, default, g)
        except UnsupportedGranularityError:
            continue
        except Exception as exc:
            raise ConformanceError(
                f"{gran_text(g)} is not claimed; expected UnsupportedGranularityError, got "
                f"{type(exc).__name__}: {exc}",
                dtype=default,
                granularity=g,
            ) from exc
        raise ConformanceError(
            f"{gran_text(g)} is not claimed (granularities={caps.granularities!r}) but compute_qparams "
            f"accepted it",
            dtype=default,
            granularity=g,
        )
    for name in list_dtypes():
        d = get_dtype(name)
        # dtypes=None claims every affine integer dtype, not codebooks (affine=False) or float codes
        is_int = getattr(d, "kind", "int") == "int"
        claimed = (is_int and getattr(d, "affine", True)) if caps.dtypes is None else name in caps.dtypes
        if not d.is_float and not claimed:
            tried += 1
            g = _INSTANCES[caps.granularities[0]] if caps.granularities else PerTensor()
            try:
                scheme.compute_qparams(x, name, g)
            except UnsupportedDtypeError:
                continue
            except Exception as exc:
                raise ConformanceError(
                    f"dtype {name!r} is not claimed; expected UnsupportedDtypeError, got "
                    f"{type(exc).__name__}: {exc}",
                    dtype=name,
                ) from exc
            raise ConformanceError(
                f"dtype {name!r} is not claimed (dtypes={caps.dtypes!r}) but compute_qparams accepted it",
                dtype=name,
            )
    if not tried:
        raise CheckSkipped("the scheme claims every dtype and every granularity kind")


@conformance_check("dtype_granularity")
def check_qparams_describe_their_producer(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """QParams say what produced them, serialize, and route core's ops to the scheme.

    They name the scheme, version, dtype, normalized granularity and affinity,
    survive to_dict/from_dict, and core's quantize/dequantize give the scheme's results.
    """
    scheme = subject.get_scheme()
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped(
            "the scheme claims no registered integer dtype (float codes: the check_float_* checks)"
        )
    x = make_tensor((4, 8), kind="normal", seed=1)
    g = _INSTANCES[case.granularity]
    qp = scheme.compute_qparams(x, case.dtype, g)
    want = {
        "scheme": scheme.name,
        "scheme_version": scheme.version,
        "dtype": case.dtype,
        "granularity": normalized(g, 2),
        "affine": scheme.capabilities.affine,
        "profile": scheme.profile.name,
    }
    got = {k: getattr(qp, k) for k in want}
    wrong = [f"{k}={got[k]!r} (expected {want[k]!r})" for k in want if got[k] != want[k]]
    if wrong:
        raise ConformanceError(
            "qparams misdescribe their producer: " + ", ".join(wrong), dtype=case.dtype, granularity=g
        )
    back = type(qp).from_dict(copy.deepcopy(qp.to_dict()))
    if not back.equals(qp):
        raise ConformanceError(
            "QParams.from_dict(qp.to_dict()) differs from qp (extra must be str -> str)",
            dtype=case.dtype,
            granularity=g,
        )
    codes = scheme.quantize(x, qp)
    deq = scheme.dequantize(codes, qp)
    if differs := code_difference("values", scheme.dequantize(codes, back), deq):
        raise ConformanceError(
            f"dequantize with round-tripped qparams differs ({differs}): dequantize must need nothing but "
            f"the qparams",
            dtype=case.dtype,
            granularity=g,
        )
    if subject.registered:
        if differs := code_difference("codes", quantize(x, qp), codes):
            raise ConformanceError(
                f"mono_quant.core.quantize(x, qp) differs from scheme.quantize(x, qp) ({differs}): a scheme "
                f"that overrides quantize must declare affine=False",
                dtype=case.dtype,
                granularity=g,
            )
        if differs := code_difference("values", dequantize(codes, qp), deq):
            raise ConformanceError(
                f"mono_quant.core.dequantize(codes, qp) differs from scheme.dequantize(codes, qp) "
                f"({differs}): a scheme that overrides dequantize must declare affine=False",
                dtype=case.dtype,
                granularity=g,
            )
