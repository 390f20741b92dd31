"""mono-quant-int4 as a plugin: it registers int4/uint4 and the two int4 schemes, nothing else.

``nox -s tests`` installs this distribution alone from its wheel; in a workspace with
every plugin installed :class:`~mono_quant.conformance.differential.PluginAloneSuite`
checks the same by disabling the others.
"""

from __future__ import annotations

import pytest

from mono_quant.conformance.differential import PluginAloneSuite
from mono_quant.core import list_dtypes, plugin_report


class TestPluginAlone(PluginAloneSuite):
    dist, plugin, dtypes = "mono-quant-int4", "int4", ("int4", "uint4")

    @pytest.mark.usefixtures("alone")
    def test_with_every_other_plugin_disabled_core_dtypes_and_ours_are_registered(self) -> None:
        core = [p for p in plugin_report().plugins if p.distribution == "mono-quant-core"]
        assert list_dtypes() == sorted([*core[0].dtypes, *self.dtypes])
