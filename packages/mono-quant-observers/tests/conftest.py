"""Shared test setup: the hypothesis profile (``$HYPOTHESIS_PROFILE``, default mono-quant-dev).

Hypothesis budget (fixed per test, whatever the profile): torch.ao differential
tests 10 examples per observer and granularity (4 for the histogram, whose
torch.ao search is slow Python), numpy percentile 40, llm-compressor MSE 20; the
conformance checks use the profile's (25 under ``mono-quant-ci``, 10 for the
costlier ones). Fixed edge cases run on every run beside the drawn ones.
"""

from __future__ import annotations

from mono_quant.conformance.differential import load_hypothesis_profile

load_hypothesis_profile()
