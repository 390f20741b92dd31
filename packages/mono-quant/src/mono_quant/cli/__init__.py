"""mono-quant: quantize checkpoints from the command line or Python."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the ``mono-quant`` command line (placeholder until the CLI lands)."""
    raise SystemExit("mono-quant: the CLI is not implemented yet")


__all__ = ["main"]
