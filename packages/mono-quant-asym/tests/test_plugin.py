"""mono-quant-asym as a plugin: it registers ``asymmetric`` and nothing else.

``nox -s tests`` installs this distribution alone from its wheel; in a workspace with
every plugin installed :class:`~mono_quant.conformance.differential.PluginAloneSuite`
checks the same by disabling the others.
"""

from __future__ import annotations

from typing import ClassVar

from mono_quant.asym import AsymmetricScheme
from mono_quant.conformance.differential import PluginAloneSuite


class TestPluginAlone(PluginAloneSuite):
    dist, plugin, scheme_class = "mono-quant-asym", "asym", AsymmetricScheme
    # "dtypes": None claims every registered integer dtype.
    claims: ClassVar[dict[str, object]] = {"dtypes": None, "symmetric": False, "golden": "torch.ao"}
    claims |= {"profiles": {"default", "torchao", "compressed-tensors", "custom"}, "nonfinite": ("raise",)}
    claims |= {"nondivisible": ("raise", "pad")}
