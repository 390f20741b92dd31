"""Packing checks: packed storage is the dtype's declared layout, on every shape, through every path."""

from __future__ import annotations

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._inputs import variants
from mono_quant.conformance._oracle import code_difference, gran_text, reference_pack
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import PerTensor, QuantDtype, get_dtype, pack, packed_shape, quantize, unpack

__all__: list[str] = []

#: Odd and even lengths along the last (packing) axis, 1-D to 4-D.
PACK_SHAPES: tuple[tuple[int, ...], ...] = ((1,), (2,), (7,), (3, 5), (4, 6), (2, 3, 5), (2, 1, 3, 7))

_CONTAINERS = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}


@conformance_check("packed_dtype")
def check_packing_round_trip(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """For each packed dtype, pack(codes) is the declared layout and unpack(pack(codes)) == codes.

    Every code, odd sizes included, in the declared container and packed shape,
    bit for bit what the dtype's Packing fields say; the scheme's own codes survive it too.
    """
    scheme = subject.get_scheme()
    if case.dtype is None:
        names = ", ".join(subject.int_dtypes()) or "none"
        raise CheckSkipped(f"none of the scheme's dtypes is packed ({names})")
    qd = get_dtype(case.dtype)
    assert qd.packing is not None and qd.qmin is not None and qd.qmax is not None
    container = _CONTAINERS[qd.packing.container]
    gen = torch.Generator().manual_seed(0)
    for shape in PACK_SHAPES:
        n = 1
        for s in shape:
            n *= s
        every = torch.arange(qd.qmin, qd.qmax + 1, dtype=torch.int64)
        fills = [
            every.repeat(n // every.numel() + 1)[:n].reshape(shape),
            torch.randint(qd.qmin, qd.qmax + 1, shape, generator=gen),
            torch.full(shape, qd.qmin),
            torch.full(shape, qd.qmax),
        ]
        for codes in (f.to(qd.torch_dtype) for f in fills):
            where = f"codes of shape {shape}: {codes.flatten().tolist()[:16]}"
            packed = pack(codes, qd)
            want = packed_shape(shape, qd)
            if packed.dtype != container or tuple(packed.shape) != want:
                raise ConformanceError(
                    f"pack gave {packed.dtype} of shape {tuple(packed.shape)}; expected {container} of "
                    f"shape {want}",
                    dtype=qd.name,
                    input=where,
                )
            if differs := code_difference("packed containers", packed, reference_pack(codes, qd.packing)):
                raise ConformanceError(
                    f"pack does not follow {qd.packing}: {differs}", dtype=qd.name, input=where
                )
            if differs := code_difference("unpacked codes", unpack(packed, qd, shape), codes):
                raise ConformanceError(
                    f"unpack(pack(codes)) is not the codes: {differs}", dtype=qd.name, input=where
                )
    if "per_tensor" in scheme.capabilities.granularities:
        x = make_tensor((3, 7), seed=13)
        qp = scheme.compute_qparams(x, qd.name, PerTensor())
        codes = scheme.quantize(x, qp)
        if subject.registered:
            try:
                through_core = quantize(x, qp, pack=True)  # type: ignore[call-arg, unused-ignore]
            except TypeError:  # a mono-quant-core without quantize(..., pack=True)
                through_core = pack(codes, qd)
            if differs := code_difference("packed containers", through_core, pack(codes, qd)):
                raise ConformanceError(
                    f"mono_quant.core.quantize(x, qp, pack=True) differs from pack(scheme.quantize(x, qp)): "
                    f"{differs}",
                    dtype=qd.name,
                    input="make_tensor((3, 7), seed=13)",
                )
        if differs := code_difference(
            "unpacked codes", unpack(pack(codes, qd), qd, tuple(codes.shape)), codes
        ):
            raise ConformanceError(
                f"the scheme's codes do not survive pack/unpack: {differs}",
                dtype=qd.name,
                input="make_tensor((3, 7), seed=13)",
            )


def _layouts() -> list[tuple[str, torch.Tensor]]:
    """Odd lengths, lengths of 1, 3-D, strided and transposed inputs."""
    return [
        ("make_tensor((1,), seed=50)", make_tensor((1,), seed=50)),
        ("make_tensor((7,), seed=51)", make_tensor((7,), seed=51)),
        ("make_tensor((1, 1), seed=52)", make_tensor((1, 1), seed=52)),
        ("make_tensor((3, 5), seed=53)", make_tensor((3, 5), seed=53)),
        ("make_tensor((2, 3, 5), seed=54)", make_tensor((2, 3, 5), seed=54)),
        (
            "make_tensor((4, 6), seed=55, noncontiguous=True)",
            make_tensor((4, 6), seed=55, noncontiguous=True),
        ),
        ("make_tensor((5, 4), seed=56).t()", make_tensor((5, 4), seed=56).t()),
        (
            "make_tensor((3, 1, 4), seed=57).permute(2, 0, 1)",
            make_tensor((3, 1, 4), seed=57).permute(2, 0, 1),
        ),
    ]


@conformance_check("packed_dtype")
def check_packed_codes_follow_the_declared_layout(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """The scheme's packed output is its codes in the dtype's declared layout, on every shape.

    quantize_tensor(..., pack=True) (and core's quantize(..., pack=True)) equal the
    codes packed element by element as the dtype's Packing says (order, offset,
    container), for odd lengths, lengths of 1, 3-D, strided and transposed inputs
    and every claimed granularity; unpacking gives the codes back.
    """
    scheme = subject.get_scheme()
    if case.dtype is None:
        names = ", ".join(subject.int_dtypes()) or "none"
        raise CheckSkipped(f"none of the scheme's dtypes is packed ({names})")
    qd: QuantDtype = get_dtype(case.dtype)
    assert qd.packing is not None
    for where, x in _layouts():
        shape = tuple(x.shape)
        for kind in scheme.capabilities.granularities:
            for g in variants(kind, shape)[:2]:
                ctx.note(dtype=qd.name, granularity=g, input=where)

                def fail(detail: str, g: object = g, where: str = where) -> ConformanceError:
                    return ConformanceError(detail, dtype=qd.name, granularity=g, input=where)

                qp = scheme.compute_qparams(x, qd.name, g)
                codes = scheme.quantize(x, qp)
                want = reference_pack(codes, qd.packing)
                one_call, _ = scheme.quantize_tensor(x, qd.name, g, pack=True)
                paths = [
                    ("quantize_tensor(..., pack=True)", one_call),
                    ("mono_quant.core.pack(codes)", pack(codes, qd)),
                ]
                if subject.registered or qp.affine:
                    paths.append(("mono_quant.core.quantize(..., pack=True)", quantize(x, qp, pack=True)))
                for path, got in paths:
                    if differs := code_difference("packed containers", got, want):
                        raise fail(
                            f"{path} is not the codes packed as {qd.packing} says ({gran_text(g)} on "
                            f"{shape}): {differs}"
                        )
                back = unpack(one_call, qd, shape)
                if differs := code_difference("unpacked codes", back, codes):
                    raise fail(f"unpack(quantize_tensor(..., pack=True)) is not the codes: {differs}")
