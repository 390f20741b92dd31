"""mono-quant-sym as a plugin: it registers ``symmetric`` and nothing else.

``nox -s tests`` installs this distribution alone from its wheel; in a workspace with
every plugin installed :class:`~mono_quant.conformance.differential.PluginAloneSuite`
checks the same by disabling the others.
"""

from __future__ import annotations

from typing import ClassVar

from mono_quant.conformance.differential import PluginAloneSuite
from mono_quant.sym import SymmetricScheme


class TestPluginAlone(PluginAloneSuite):
    dist, plugin, scheme_class = "mono-quant-sym", "sym", SymmetricScheme
    # "dtypes": None claims every registered integer dtype.
    claims: ClassVar[dict[str, object]] = {"dtypes": None, "symmetric": True, "golden": "torch.ao"}
    claims |= {"profiles": {"default", "torchao", "compressed-tensors", "custom"}, "nonfinite": ("raise",)}
    claims |= {"nondivisible": ("raise", "pad")}
