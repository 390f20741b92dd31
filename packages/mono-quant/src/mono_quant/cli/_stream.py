"""The tensor-by-tensor loop: read one tensor, quantize or copy it, hand it to a sink, let it go."""

from __future__ import annotations

from typing import Protocol

import torch

from mono_quant.cli._options import option
from mono_quant.cli._plan import Plan
from mono_quant.cli._progress import Progress
from mono_quant.cli._report import TensorReport
from mono_quant.cli._source import Shard, Source, TensorInfo
from mono_quant.cli._tensor import QuantizedTensor, quantize_tensor
from mono_quant.core import NonFiniteError

__all__ = ["Sink", "run"]


class Sink(Protocol):
    """Where the loop's output goes: a file writer or an in-memory dict."""

    #: Whether the sink keeps the tensors it is given (or views of them) after ``copy``
    #: returns. If it does, each input tensor is a fresh allocation; if not, the loop
    #: reads every tensor of a file into one reused buffer.
    retains_inputs: bool

    def begin_shard(self, shard: Shard) -> None:
        """A new input shard starts."""

    def copy(self, name: str, tensor: torch.Tensor) -> int:
        """Store ``tensor`` unchanged; return the bytes stored."""

    def quantized(self, name: str, qt: QuantizedTensor) -> tuple[int, torch.Tensor | None]:
        """Store a quantized tensor; return the bytes stored and the values a reader decodes.

        The values are ``None`` when they are mono-quant's float32 dequantize; otherwise
        the report's error is computed from them.
        """

    def end_shard(self) -> None:
        """The current shard is done."""


def run(source: Source, plan: Plan, sink: Sink, *, progress: Progress | None = None) -> list[TensorReport]:
    """Quantize or copy every tensor of ``source`` into ``sink``, one tensor in memory at a time.

    Unless ``sink.retains_inputs``, the tensors of a file are read into one
    reused buffer, so each must be done with before the next is read. Errors
    propagate as raised (core errors name the tensor); the caller's atomic
    output removes anything partial.
    """
    reports: list[TensorReport] = []
    for shard in source.shards:
        sink.begin_shard(shard)
        with shard.open(reuse=not sink.retains_inputs) as reader:
            for info in shard.infos:
                tensor = reader.get(info.name)
                reports.append(_one(info, tensor, plan, sink))
                del tensor  # only one input tensor is alive at a time (the next read may reuse its memory)
                if progress is not None:
                    progress.update(info.nbytes)
        sink.end_shard()
    return reports


def _one(info: TensorInfo, tensor: torch.Tensor, plan: Plan, sink: Sink) -> TensorReport:
    name = info.name
    dtype = str(info.dtype).removeprefix("torch.")
    wanted, reason = plan.selection.decide(name, info.dtype, info.shape)
    if not wanted:
        after = sink.copy(name, tensor)
        return TensorReport(name, info.shape, dtype, "copied", info.nbytes, after, reason=reason)
    misfit = plan.group_misfit(info.shape) if plan.nondivisible == "skip" else None
    if misfit is not None:
        after = sink.copy(name, tensor)
        why = f"{misfit}; copied unquantized ({option('nondivisible', 'skip')})"
        return TensorReport(name, info.shape, dtype, "skipped", info.nbytes, after, reason=why)
    try:
        # Every scheme raises NonFiniteError on its own (core's contract, float targets
        # included); quantize_tensor also refuses non-finite energies as a backstop.
        qt, signal, noise = quantize_tensor(tensor, plan.scheme, plan.dtype, plan.granularity, name=name)
    except NonFiniteError as exc:
        if plan.nonfinite != "skip":
            raise NonFiniteError(
                f"{exc} Or pass {option('nonfinite', 'skip')} to copy it unquantized."
            ) from exc
        after = sink.copy(name, tensor)
        bad = int((~torch.isfinite(tensor)).sum())
        return TensorReport(
            name,
            info.shape,
            dtype,
            "skipped",
            info.nbytes,
            after,
            reason=f"{bad} non-finite value(s); copied unquantized ({option('nonfinite', 'skip')})",
        )
    after, decoded = sink.quantized(name, qt)
    if decoded is not None:  # the report's numbers come from what the file decodes to
        xd = tensor.detach().to(torch.float64).reshape(-1)
        diff = decoded.to(torch.float64).reshape(-1) - xd
        signal, noise = float(torch.dot(xd, xd)), float(torch.dot(diff, diff))
    return TensorReport(
        name,
        info.shape,
        dtype,
        "quantized",
        info.nbytes,
        after,
        reason=reason,
        scheme=plan.scheme.name,
        dtype=plan.dtype.name,
        granularity=str(qt.qparams.granularity),
        signal=signal,
        noise=noise,
    )
