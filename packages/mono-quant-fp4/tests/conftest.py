"""Shared test setup: the hypothesis profile and the differential fixtures ``bitexact`` and ``minilm``."""

from __future__ import annotations

from mono_quant.conformance.differential import bitexact, load_hypothesis_profile, minilm

__all__ = ["bitexact", "minilm"]  # pytest finds fixtures by name here

load_hypothesis_profile()
