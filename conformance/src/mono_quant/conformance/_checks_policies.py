"""Policy checks: declared non-finite and non-divisible-group behaviour holds."""

from __future__ import annotations

import math
import re

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._oracle import check_bound, expected_qparam_shape, gran_text, variants
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import GroupSizeError, NonFiniteError, PerGroup, get_dtype

__all__: list[str] = []

#: Where the non-finite values go in a (4, 6) input: the first is (1, 2), three in all.
_BAD_AT = ((1, 2), (2, 0), (3, 5))
_NAME = "conformance.weight"


@conformance_check("dtype_granularity")
def check_nonfinite_input_follows_policy(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """NaN/±inf input under the 'raise' policy raises NonFiniteError, never garbage.

    Both compute_qparams and quantize raise it, naming the tensor, the count and
    the first index; never a NaN scale, a garbage zero-point or garbage codes.
    """
    scheme = subject.get_scheme()
    if case.dtype is None or case.granularity is None:
        raise CheckSkipped("the scheme claims no registered integer dtype")
    qd = get_dtype(case.dtype)
    policies = scheme.capabilities.nonfinite
    if "raise" not in policies:
        raise CheckSkipped(f"no policy this suite knows among {policies!r}")
    configured = scheme.configure(nonfinite="raise")
    clean = make_tensor((4, 6), kind="normal", seed=2)
    for g in variants(case.granularity, (4, 6)):
        for value in (math.nan, math.inf, -math.inf):
            x = clean.clone()
            for index in _BAD_AT:
                x[index] = value
            where = f"make_tensor((4, 6), seed=2) with {value} at {', '.join(map(str, _BAD_AT))}"
            for step in ("compute_qparams", "quantize"):
                try:
                    if step == "compute_qparams":
                        qp = configured.compute_qparams(x, qd.name, g, name=_NAME)
                        bad = f"scale {qp.scale!r}, zero-point {qp.zero_point!r}"
                    else:
                        qp = configured.compute_qparams(clean, qd.name, g, name=_NAME)
                        bad = f"codes {configured.quantize(x, qp, name=_NAME)!r}"
                except NonFiniteError as exc:
                    text = str(exc)
                    missing = [
                        what
                        for what, ok in (
                            (f"the tensor name {_NAME!r}", _NAME in text),
                            ("the count 3", re.search(r"\b3\b", text) is not None),
                            ("the first index (1, 2)", "1, 2" in text),
                        )
                        if not ok
                    ]
                    if missing:
                        raise ConformanceError(
                            f"{step} raised NonFiniteError, but its message lacks "
                            f"{', '.join(missing)}: {text!r}",
                            dtype=qd.name,
                            granularity=g,
                            input=where,
                        ) from exc
                    continue
                except Exception as exc:
                    raise ConformanceError(
                        f"{step} raised {type(exc).__name__} on non-finite input; the 'raise' policy "
                        f"means mono_quant.core.NonFiniteError: {exc}",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    ) from exc
                raise ConformanceError(
                    f"{step} accepted non-finite input under the 'raise' policy and returned {bad}",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )


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
            if policy == "raise":
                try:
                    qp = configured.compute_qparams(x, qd.name, g)
                except GroupSizeError as exc:
                    text = str(exc)
                    if str(size) not in text or str(g.group_size) not in text:
                        raise ConformanceError(
                            f"GroupSizeError must name the axis size {size} and the group size "
                            f"{g.group_size}: {text!r}",
                            dtype=qd.name,
                            granularity=g,
                            input=where,
                        ) from exc
                    continue
                except Exception as exc:
                    raise ConformanceError(
                        f"nondivisible='raise' raised {type(exc).__name__}, not GroupSizeError: {exc}",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    ) from exc
                got = None if qp.scale is None else tuple(qp.scale.shape)
                raise ConformanceError(
                    f"nondivisible='raise' accepted group_size {g.group_size} on an axis of {size} "
                    f"(scale shape {got}): a partial group was silently dropped or padded",
                    dtype=qd.name,
                    granularity=g,
                    input=where,
                )
            if policy == "pad":
                qp = configured.compute_qparams(x, qd.name, g)
                want = expected_qparam_shape(shape, g, pad=True)
                got = None if qp.scale is None else tuple(qp.scale.shape)
                if got != want:
                    raise ConformanceError(
                        f"nondivisible='pad' gave scale shape {got} for {gran_text(g)} on {shape}; "
                        f"expected {want} (the last group partial, not dropped)",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    )
                codes = configured.quantize(x, qp)
                deq = configured.dequantize(codes, qp)
                if tuple(codes.shape) != shape:
                    raise ConformanceError(
                        f"nondivisible='pad' gave codes of shape {tuple(codes.shape)}; expected {shape}",
                        dtype=qd.name,
                        granularity=g,
                        input=where,
                    )
                try:
                    check_bound(configured, qd, x, qp, codes, deq, PerGroup(g.axis % 2, g.group_size))
                except ConformanceError as exc:
                    exc.detail = "nondivisible='pad': " + exc.detail
                    exc.args = (exc.detail,)
                    exc.input = where
                    raise
