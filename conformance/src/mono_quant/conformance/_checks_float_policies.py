"""Float code policy and state checks: non-finite input, groups that do not divide, inputs left alone."""

from __future__ import annotations

import re

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._checks_float import check_float_bound, code_bits
from mono_quant.conformance._checks_shapes import bits_equal
from mono_quant.conformance._inputs import variants
from mono_quant.conformance._oracle import code_difference, expected_qparam_shape
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import FLOAT_DTYPES, make_tensor
from mono_quant.core import (
    Granularity,
    GroupSizeError,
    NonFiniteError,
    PerGroup,
    QParams,
    QuantDtype,
    Scheme,
    get_dtype,
    quantize_with_error,
)

__all__: list[str] = []

_NAME = "conformance.weight"
_BAD_AT = ((1, 2), (2, 0), (3, 5))


#: Every way a tensor enters a scheme.
_PATHS = (
    "compute_qparams",
    "quantize",
    "quantize_tensor(..., pack=True)",
    "mono_quant.core.quantize_with_error",
)


def _call(
    path: str, scheme: Scheme, qd: QuantDtype, g: Granularity, x: torch.Tensor, clean: QParams
) -> object:
    if path == "compute_qparams":
        return scheme.compute_qparams(x, qd.name, g, name=_NAME)
    if path == "quantize":
        return scheme.quantize(x, clean, name=_NAME)
    if path == "quantize_tensor(..., pack=True)":
        return scheme.quantize_tensor(x, qd.name, g, name=_NAME, pack=True)
    return quantize_with_error(scheme, x, qd.name, g, name=_NAME)


def _float_dtype(subject: Subject, case: Case) -> tuple[Scheme, QuantDtype]:
    if case.dtype is None:
        raise CheckSkipped("the scheme claims no float code dtype")
    return subject.get_scheme(), get_dtype(case.dtype)


@conformance_check("float_code")
def check_float_nonfinite_input_raises(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Float codes: NaN/±inf raise NonFiniteError naming the tensor, count and first index, on every path."""
    scheme, qd = _float_dtype(subject, case)
    g = scheme.capabilities.default_granularity
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = make_tensor((4, 32), seed=8)
        clean = scheme.compute_qparams(x, qd.name, g)
        for i, j in _BAD_AT:
            x[i, j] = bad
        where = f"make_tensor((4, 32), seed=8) with {bad} at {list(_BAD_AT)}"
        for path in _PATHS:
            ctx.note(dtype=qd.name, granularity=g, input=where)
            try:
                _call(path, scheme, qd, g, x, clean)
            except NonFiniteError as exc:
                msg = str(exc)
                facts = (repr(_NAME), "holds 3 non-finite value(s)", "at index (1, 2)")
                missing = [f for f in facts if f not in msg]
                if path != "quantize" and missing:
                    raise ConformanceError(
                        f"{path}: NonFiniteError must name the tensor, the count and the first index; "
                        f"{missing} missing from: {msg}",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    ) from exc
                continue
            raise ConformanceError(
                f"{path} accepted {bad} without NonFiniteError (the declared policy is 'raise')",
                dtype=qd.name,
                granularity=g,
                input=where,
            )


@conformance_check("float_code")
def check_float_nondivisible_group_follows_policy(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """Float codes: a group size that does not divide raises GroupSizeError, or pads a partial last block."""
    scheme, qd = _float_dtype(subject, case)
    if "per_group" not in scheme.capabilities.granularities:
        raise CheckSkipped("the scheme claims no per_group granularity")
    x = make_tensor((3, 20), seed=9)
    g = PerGroup(-1, 8)
    where = "make_tensor((3, 20), seed=9)"
    ctx.note(dtype=qd.name, granularity=g, input=where)
    try:
        scheme.configure(nondivisible="raise").compute_qparams(x, qd.name, g, name=_NAME)
    except GroupSizeError as exc:
        if not re.search(r"\(size 20\); got 8", str(exc)):
            raise ConformanceError(
                f"GroupSizeError must name both sizes: {exc}", dtype=qd.name, input=where
            ) from exc
    else:
        raise ConformanceError(
            "group size 8 on 20 columns was accepted under 'raise'", dtype=qd.name, input=where
        )
    if "pad" not in scheme.capabilities.nondivisible:
        return
    padded = scheme.configure(nondivisible="pad")
    qp = padded.compute_qparams(x, qd.name, g)
    want = expected_qparam_shape((3, 20), g, pad=True)
    assert qp.scale is not None
    if tuple(qp.scale.shape) != want:
        raise ConformanceError(f"padded scale shape {tuple(qp.scale.shape)}, expected {want}", dtype=qd.name)
    codes = padded.quantize(x, qp)
    check_float_bound(padded, qd, x, qp, codes, padded.dequantize(codes, qp))


def _outputs(scheme: Scheme, qd: QuantDtype, x: torch.Tensor, g: Granularity) -> list[torch.Tensor]:
    qp = scheme.compute_qparams(x, qd.name, g)
    codes = scheme.quantize(x, qp)
    assert qp.scale is not None
    return [qp.scale, code_bits(codes), scheme.dequantize(codes, qp)]


@conformance_check("float_code")
def check_float_input_is_left_alone_and_results_repeat(
    subject: Subject, case: Case, ctx: CheckContext
) -> None:
    """Float codes: inputs are not written to; results repeat, and non-contiguous equals contiguous."""
    scheme, qd = _float_dtype(subject, case)
    for kind in scheme.capabilities.granularities:
        for g in variants(kind, (8, 32))[:1]:
            for i, dt in enumerate(FLOAT_DTYPES.values()):
                where = f"make_tensor((8, 32), {dt}, seed={60 + i}, noncontiguous=True)"
                ctx.note(dtype=qd.name, granularity=g, input=where)
                x = make_tensor((8, 32), dt, seed=60 + i, noncontiguous=True)
                before, version = x.clone(), x._version
                first = _outputs(scheme, qd, x, g)
                if not bits_equal(x, before) or x._version != version:
                    raise ConformanceError(
                        "the input was written to", dtype=qd.name, granularity=g, input=where
                    )
                for what, a, b in zip(
                    ("scale", "codes", "values"), first, _outputs(scheme, qd, x, g), strict=True
                ):
                    if differs := code_difference(what, a, b):
                        raise ConformanceError(
                            f"a second call differs: {differs}", dtype=qd.name, granularity=g, input=where
                        )
                contiguous = _outputs(scheme, qd, x.contiguous(), g)
                for what, a, b in zip(("scale", "codes", "values"), first, contiguous, strict=True):
                    if differs := code_difference(what, a, b):
                        raise ConformanceError(
                            f"non-contiguous input differs from its contiguous copy: {differs}",
                            dtype=qd.name,
                            granularity=g,
                            input=where,
                        )
