"""Hypothesis profiles: derandomized in CI (``HYPOTHESIS_PROFILE=mono-quant-ci``), exploring locally."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("mono-quant-ci", derandomize=True, max_examples=25, deadline=None, print_blob=True)
settings.register_profile("mono-quant-dev", max_examples=100, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))
