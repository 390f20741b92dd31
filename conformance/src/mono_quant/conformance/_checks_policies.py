"""Policy checks: declared non-finite and non-divisible-group behaviour holds."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import variants
from mono_quant.conformance._oracle import check_bound, code_difference, expected_qparam_shape, gran_text
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import (
    Granularity,
    GroupSizeError,
    NonFiniteError,
    PerGroup,
    QParams,
    QuantDtype,
    Scheme,
    get_dtype,
    pack,
    quantize_with_error,
)

__all__: list[str] = []

#: Where the non-finite values go in a (4, 6) input: the first is (1, 2), three in all.
_BAD_AT = ((1, 2), (2, 0), (3, 5))
_NAME = "conformance.weight"


EntryPoint = Callable[[Scheme, torch.Tensor, str, Granularity, "QParams | None"], object]


def _quantize(s: Scheme, x: torch.Tensor, qp: QParams | None) -> torch.Tensor:
    assert qp is not None
    return s.quantize(x, qp, name=_NAME)


#: Every way a tensor enters a scheme, given the scheme, the tensor, the dtype, the granularity
#: and qparams computed from a clean tensor of the same shape (for quantize).
_ENTRY_POINTS: dict[str, EntryPoint] = {
    "compute_qparams": lambda s, x, d, g, qp: s.compute_qparams(x, d, g, name=_NAME),
    "quantize": lambda s, x, d, g, qp: _quantize(s, x, qp),
    "quantize_tensor(..., pack=False)": lambda s, x, d, g, qp: s.quantize_tensor(x, d, g, name=_NAME),
    "quantize_tensor(..., pack=True)": lambda s, x, d, g, qp: s.quantize_tensor(
        x, d, g, name=_NAME, pack=True
    ),
    "mono_quant.core.quantize_with_error (the checkpoint path)": lambda s, x, d, g, qp: quantize_with_error(
        s, x, d, g, name=_NAME
    ),
}


def _nonfinite_inputs() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(description, clean, with non-finite values)``: float32 with each value; half, double, strided."""
    out = []
    cases = [
        (math.nan, torch.float32, False),
        (math.inf, torch.float32, False),
        (-math.inf, torch.float32, False),
    ]
    cases += [
        (math.nan, torch.bfloat16, True),
        (-math.inf, torch.float16, False),
        (math.inf, torch.float64, True),
    ]
    for value, dt, strided in cases:
        clean = make_tensor((4, 6), dt, kind="normal", seed=2, noncontiguous=strided)
        x = (
            clean.clone()
            if not strided
            else make_tensor((4, 6), dt, kind="normal", seed=2, noncontiguous=True)
        )
        for index in _BAD_AT:
            x[index] = value
        where = (
            f"make_tensor((4, 6), {dt}, seed=2, noncontiguous={strided}) with {value} at "
            f"{', '.join(map(str, _BAD_AT))}"
        )
        out.append((where, clean, x))
    return out


def _missing_facts(text: str) -> list[str]:
    return [
        what
        for what, ok in (
            (f"the tensor name {_NAME!r}", _NAME in text),
            ("the count 3", re.search(r"\b3\b", text) is not None),
            ("the first index (1, 2)", "1, 2" in text),
        )
        if not ok
    ]


@conformance_check("dtype_granularity")
def check_nonfinite_input_follows_policy(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """NaN/±inf input under the 'raise' policy raises NonFiniteError through every entry point.

    compute_qparams, quantize, quantize_tensor (packed or not) and core's
    quantize_with_error each raise it, naming the tensor, the count and the first
    index, for every float dtype and strided input; never a NaN scale or garbage codes.
    """
    scheme = subject.get_scheme()
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    policies = scheme.capabilities.nonfinite
    if "raise" not in policies:
        raise CheckSkipped(f"no policy this suite knows among {policies!r}")
    configured = scheme.configure(nonfinite="raise")
    for g in variants(case.granularity, (4, 6)):
        for where, clean, x in _nonfinite_inputs():
            ctx.note(dtype=qd.name, granularity=g, input=where)
            try:
                clean_qp = configured.compute_qparams(clean, qd.name, g, name=_NAME)
            except Exception as exc:
                raise ConformanceError(
                    f"compute_qparams raised {type(exc).__name__} on the clean input, before any non-finite "
                    f"value was put in: {exc}",
                    dtype=qd.name,
                    granularity=g,
                    input=where.split(" with ")[0],
                ) from exc
            for step, enter in _ENTRY_POINTS.items():
                try:
                    got = enter(configured, x, qd.name, g, clean_qp)
                except NonFiniteError as exc:
                    if missing := _missing_facts(str(exc)):
                        raise ConformanceError(
                            f"{step} raised NonFiniteError, but its message lacks {', '.join(missing)}: "
                            f"{str(exc)!r}",
                            dtype=qd.name,
                            granularity=g,
                            input=where,
                        ) from exc
                    continue
                except Exception as exc:
                    raise ConformanceError(
                        f"{step} raised {type(exc).__name__} on non-finite input; the 'raise' policy means "
                        f"mono_quant.core.NonFiniteError: {exc}",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    ) from exc
                raise ConformanceError(
                    f"{step} accepted non-finite input under the 'raise' policy and returned {_brief(got)}",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )


def _brief(result: object) -> str:
    """A short account of what an entry point returned."""
    if isinstance(result, QParams):
        return f"qparams with scale {result.scale!r} and zero-point {result.zero_point!r}"
    if isinstance(result, torch.Tensor):
        return f"codes {result.tolist()}"
    if isinstance(result, tuple):
        return ", ".join(_brief(r) for r in result)
    return repr(result)


@conformance_check("dtype")
def check_nondivisible_group_follows_policy(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """A group size that does not divide the axis follows the declared policy.

    Under 'raise': GroupSizeError naming both sizes. Under 'pad':
    ceil(n / group_size) groups, the last partial one with its own range.
    """
    scheme = subject.get_scheme()
    caps = scheme.capabilities
    if "per_group" not in caps.granularities:
        raise CheckSkipped("the scheme does not claim per_group")
    if case.dtype is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    shape = (3, 10)
    x = make_tensor(shape, kind="normal", seed=4)
    x[:, 8:] *= 100.0  # the partial group along the last axis holds the largest values
    x[2, :] = 50.0 + torch.arange(10.0)  # and the partial group along axis 0 is its own range
    where = "make_tensor((3, 10), seed=4) with x[:, 8:] *= 100 and x[2] = 50 + arange(10)"
    for policy in caps.nondivisible:
        configured = scheme.configure(nondivisible=policy)
        for g, size in ((PerGroup(-1, 4), 10), (PerGroup(0, 2), 3)):
            ctx.note(dtype=qd.name, granularity=g, input=where)
            if policy == "raise":
                for step, enter in _ENTRY_POINTS.items():
                    if step != "quantize":  # no qparams exist to quantize with
                        _refuses_group(step, enter, configured, x, qd, g, size, where)
            elif policy == "pad":
                _pads_group(configured, x, qd, g, where)


def _refuses_group(
    step: str,
    enter: EntryPoint,
    scheme: Scheme,
    x: torch.Tensor,
    qd: QuantDtype,
    g: PerGroup,
    size: int,
    where: str,
) -> None:
    """``step`` must raise GroupSizeError naming the axis size and the group size."""
    try:
        got = enter(scheme, x, qd.name, g, None)
    except GroupSizeError as exc:
        text = str(exc)
        if str(size) not in text or str(g.group_size) not in text:
            raise ConformanceError(
                f"{step}: GroupSizeError must name the axis size {size} and the group size "
                f"{g.group_size}: {text!r}",
                dtype=qd.name,
                granularity=g,
                input=where,
            ) from exc
        return
    except Exception as exc:
        raise ConformanceError(
            f"{step} under nondivisible='raise' raised {type(exc).__name__}, not GroupSizeError: {exc}",
            dtype=qd.name,
            granularity=g,
            input=where,
        ) from exc
    raise ConformanceError(
        f"{step} under nondivisible='raise' accepted group_size {g.group_size} on an axis of {size} and "
        f"returned {_brief(got)}: a partial group was silently dropped or padded",
        dtype=qd.name,
        granularity=g,
        input=where,
    )


def _pads_group(scheme: Scheme, x: torch.Tensor, qd: QuantDtype, g: PerGroup, where: str) -> None:
    """Under 'pad': ceil(n / group_size) groups, the partial one within its own bound; every path agrees."""
    shape = tuple(x.shape)

    def fail(detail: str) -> ConformanceError:
        return ConformanceError(f"nondivisible='pad': {detail}", dtype=qd.name, granularity=g, input=where)

    qp = scheme.compute_qparams(x, qd.name, g)
    want = expected_qparam_shape(shape, g, pad=True)
    got = None if qp.scale is None else tuple(qp.scale.shape)
    if got != want:
        raise fail(
            f"scale shape {got} for {gran_text(g)} on {shape}; expected {want} (the last group partial)"
        )
    codes = scheme.quantize(x, qp)
    if tuple(codes.shape) != shape:
        raise fail(f"codes of shape {tuple(codes.shape)}; expected {shape}")
    try:
        check_bound(
            scheme, qd, x, qp, codes, scheme.dequantize(codes, qp), PerGroup(g.axis % 2, g.group_size)
        )
    except ConformanceError as exc:
        exc.detail = "nondivisible='pad': " + exc.detail
        exc.args = (exc.detail,)
        exc.input = where
        raise
    for step, (one_codes, one_qp) in (
        ("quantize_tensor(..., pack=False)", scheme.quantize_tensor(x, qd.name, g)),
        ("quantize_tensor(..., pack=True)", scheme.quantize_tensor(x, qd.name, g, pack=True)),
        ("quantize_with_error", quantize_with_error(scheme, x, qd.name, g)[:2]),
    ):
        differs = None if one_qp.equals(qp) else "other qparams"
        differs = differs or code_difference("codes", one_codes, pack(codes, qd) if "True" in step else codes)
        if differs:
            raise fail(f"{step} differs from compute_qparams then quantize: {differs}")
