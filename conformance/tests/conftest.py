"""Shared setup: the hypothesis profile, the broken-plugin libraries, and what not to collect."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import settings

from mono_quant.conformance import strategies  # noqa: F401 - registers the mono-quant profiles

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mono-quant-dev"))


def _load(name: str) -> None:
    """Import the helper module ``<name>.py`` beside this file as ``name`` (tests are not a package)."""
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load("broken_schemes")
_load("broken_properties")

# The broken plugin distribution is installed by a test, never imported from here; the
# broken-plugin libraries are imported above, not collected.
collect_ignore = ["broken_dist", "broken_schemes.py", "broken_properties.py"]
