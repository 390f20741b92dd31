"""Packing checks: pack then unpack gives the codes back for every packed dtype."""

from __future__ import annotations

import torch

from mono_quant.conformance._catalog import Case, conformance_check
from mono_quant.conformance._results import CheckSkipped, ConformanceError
from mono_quant.conformance._runner import CheckContext
from mono_quant.conformance._selection import Subject
from mono_quant.conformance.strategies import make_tensor
from mono_quant.core import PerTensor, get_dtype, pack, packed_shape, quantize, unpack

__all__: list[str] = []

#: Odd and even lengths along the last (packing) axis, 1-D to 4-D.
PACK_SHAPES: tuple[tuple[int, ...], ...] = ((1,), (2,), (7,), (3, 5), (4, 6), (2, 3, 5), (2, 1, 3, 7))

_CONTAINERS = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}


@conformance_check("packed_dtype")
def check_packing_round_trip(subject: Subject, case: Case, ctx: CheckContext) -> None:
    """For each packed dtype, unpack(pack(codes)) == codes, odd sizes included.

    Every code, in the declared container and packed shape; the scheme's own
    codes survive it too.
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
            back = unpack(packed, qd, shape)
            if back.dtype != codes.dtype or not torch.equal(back, codes):
                wrong = (back.to(torch.int64) != codes.to(torch.int64)).nonzero()
                first = tuple(int(v) for v in wrong[0]) if len(wrong) else "dtype"
                raise ConformanceError(
                    f"unpack(pack(codes)) differs from codes (first at {first})", dtype=qd.name, input=where
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
            if not torch.equal(through_core, pack(codes, qd)):
                raise ConformanceError(
                    "mono_quant.core.quantize(x, qp, pack=True) differs from pack(scheme.quantize(x, qp))",
                    dtype=qd.name,
                    input="make_tensor((3, 7), seed=13)",
                )
        if not torch.equal(unpack(pack(codes, qd), qd, tuple(codes.shape)), codes):
            raise ConformanceError(
                "the scheme's codes do not survive pack/unpack",
                dtype=qd.name,
                input="make_tensor((3, 7), seed=13)",
            )
