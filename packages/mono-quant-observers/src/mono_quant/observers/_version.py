"""The installed version of mono-quant-observers, stamped on every observer."""

from __future__ import annotations

import importlib.metadata as md

__all__ = ["VERSION"]

try:
    VERSION = md.version("mono-quant-observers")
except md.PackageNotFoundError:  # pragma: no cover - source tree without metadata
    VERSION = "0+unknown"
