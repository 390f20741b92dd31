"""Shared setup: the hypothesis profile from HYPOTHESIS_PROFILE, and what not to collect."""

from __future__ import annotations

import os

from hypothesis import settings

from mono_quant.conformance import strategies  # noqa: F401 - registers the mono-quant profiles

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))

# The broken plugin distribution is installed by a test, never imported from here.
collect_ignore = ["broken_dist"]
