"""The report: per-tensor SQNR and true byte counts, totals, as a terminal table and as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mono_quant.cli._tensor import sqnr_db

__all__ = ["Report", "TensorReport", "human_bytes"]

Action = Literal["quantized", "copied", "skipped"]


@dataclass(frozen=True)
class TensorReport:
    """What happened to one tensor.

    ``action`` is ``quantized``, ``copied`` (not selected; ``reason`` says why) or
    ``skipped`` (selected but copied unquantized, e.g. non-finite values with
    ``--nonfinite skip``). Bytes are tensor data: before = the input tensor,
    after = everything stored for it (codes + scale + zero-point).

    >>> t = TensorReport("fc.weight", (4, 4), "float32", "quantized", 64, 24, signal=1e4, noise=1.0)
    >>> t.sqnr_db
    40.0
    """

    name: str
    shape: tuple[int, ...]
    orig_dtype: str
    action: Action
    bytes_before: int
    bytes_after: int
    reason: str = ""
    scheme: str = ""
    dtype: str = ""
    granularity: str = ""
    signal: float = 0.0
    noise: float = 0.0

    @property
    def sqnr_db(self) -> float | None:
        """SQNR in dB (``inf`` if exact); ``None`` for a tensor that was not quantized."""
        if self.action != "quantized":
            return None
        return sqnr_db(self.signal, self.noise)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; an exact (infinite) SQNR is written as the string ``"inf"``."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "orig_dtype": self.orig_dtype,
            "action": self.action,
            "reason": self.reason,
            "scheme": self.scheme,
            "dtype": self.dtype,
            "granularity": self.granularity,
            "sqnr_db": _json_float(self.sqnr_db),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
        }


def _json_float(v: float | None) -> float | str | None:
    if v is None:
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return round(v, 4)


@dataclass
class Report:
    """The whole run: every tensor, totals, and what was asked.

    >>> r = Report([TensorReport("w", (2, 2), "float32", "quantized", 16, 8, signal=100.0, noise=1.0)])
    >>> r.compression_ratio, r.sqnr_db
    (2.0, 20.0)
    """

    tensors: list[TensorReport] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    input: str = ""
    output: str = ""
    format: str = ""
    wall_time_s: float = 0.0
    input_file_bytes: int = 0
    output_file_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_before(self) -> int:
        """Tensor bytes of the input."""
        return sum(t.bytes_before for t in self.tensors)

    @property
    def bytes_after(self) -> int:
        """Tensor bytes of the output: codes + scales + zero-points + unquantized tensors."""
        return sum(t.bytes_after for t in self.tensors)

    @property
    def compression_ratio(self) -> float:
        """``bytes_before / bytes_after``."""
        return self.bytes_before / self.bytes_after if self.bytes_after else math.inf

    @property
    def sqnr_db(self) -> float | None:
        """Whole-model SQNR: all quantized tensors' signal energy over all their noise energy."""
        q = [t for t in self.tensors if t.action == "quantized"]
        if not q:
            return None
        return sqnr_db(sum(t.signal for t in q), sum(t.noise for t in q))

    def flagged(self, threshold: float | None = None) -> list[TensorReport]:
        """Quantized tensors whose SQNR is below ``threshold`` (default: the plan's)."""
        limit = float(self.plan.get("sqnr_threshold_db", 10.0)) if threshold is None else threshold
        return [t for t in self.tensors if t.sqnr_db is not None and t.sqnr_db < limit]

    def count(self, action: Action) -> int:
        """How many tensors had ``action``."""
        return sum(1 for t in self.tensors if t.action == action)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``--report FILE.json`` writes)."""
        return {
            "input": self.input,
            "output": self.output,
            "format": self.format,
            "plan": self.plan,
            "totals": {
                "tensors": len(self.tensors),
                "quantized": self.count("quantized"),
                "copied": self.count("copied"),
                "skipped": self.count("skipped"),
                "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after,
                "compression_ratio": round(self.compression_ratio, 4),
                "sqnr_db": _json_float(self.sqnr_db),
                "input_file_bytes": self.input_file_bytes,
                "output_file_bytes": self.output_file_bytes,
                "wall_time_s": round(self.wall_time_s, 3),
                "flagged": [t.name for t in self.flagged()],
            },
            "notes": list(self.notes),
            "tensors": [t.to_dict() for t in self.tensors],
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_dict` as indented JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def render(self, *, width: int = 60, all_tensors: bool = False) -> str:
        """The terminal table: quantized and skipped tensors (all with ``all_tensors``), then totals."""
        threshold = float(self.plan.get("sqnr_threshold_db", 10.0))
        rows = [t for t in self.tensors if all_tensors or t.action != "copied"]
        header = ("tensor", "shape", "scheme", "dtype", "granularity", "SQNR dB", "before", "after")
        body = [
            (
                _shorten(t.name, width) + (" !" if t.sqnr_db is not None and t.sqnr_db < threshold else ""),
                "×".join(str(s) for s in t.shape) or "()",
                t.scheme or "-",
                t.dtype or t.orig_dtype,
                t.granularity or t.action + (f" ({t.reason})" if t.action == "skipped" else ""),
                _fmt_db(t.sqnr_db),
                human_bytes(t.bytes_before),
                human_bytes(t.bytes_after),
            )
            for t in rows
        ]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        right = {5, 6, 7}

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        out = [line(header), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in body]
        copied = [t for t in self.tensors if t.action == "copied"]
        if copied and not all_tensors:
            out.append(
                f"... and {len(copied)} tensor(s) copied unchanged (1-D, integer or not selected): "
                f"{human_bytes(sum(t.bytes_before for t in copied))}"
            )
        out.append("")
        out.append(
            f"tensors: {len(self.tensors)} ({self.count('quantized')} quantized, "
            f"{self.count('copied')} copied, "
            f"{self.count('skipped')} skipped)"
        )
        out.append(
            f"bytes:   {human_bytes(self.bytes_before)} -> {human_bytes(self.bytes_after)} "
            f"(codes + scales + zero-points + unquantized tensors), ratio {self.compression_ratio:.2f}x"
        )
        if self.output_file_bytes:
            out.append(
                f"files:   {human_bytes(self.input_file_bytes)} -> "
                f"{human_bytes(self.output_file_bytes)} on disk"
            )
        out.append(f"SQNR:    {_fmt_db(self.sqnr_db)} dB whole model (quantized tensors)")
        out.append(f"time:    {self.wall_time_s:.2f} s")
        flagged = self.flagged()
        if flagged:
            out.append(
                f"! {len(flagged)} tensor(s) below {threshold:g} dB SQNR: "
                f"{', '.join(t.name for t in flagged[:5])}" + (" ..." if len(flagged) > 5 else "")
            )
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1f}"


def _shorten(name: str, width: int) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def human_bytes(n: int) -> str:
    """``n`` bytes in B, KiB, MiB or GiB with one decimal.

    >>> human_bytes(1536)
    '1.5 KiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
