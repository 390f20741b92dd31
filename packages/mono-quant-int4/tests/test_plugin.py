"""mono-quant-int4 as a plugin: it registers int4/uint4 and the two int4 schemes, nothing else.

``nox -s tests`` installs this distribution alone from its wheel, where the
registry holds exactly these. In a workspace with every plugin installed the
same is checked by disabling the others (:class:`~mono_quant.conformance.differential.PluginAloneSuite`).
"""

from __future__ import annotations

import importlib.metadata as md

import pytest

from mono_quant.conformance.differential import PluginAloneSuite
from mono_quant.core import list_dtypes, plugin_report

DIST = "mono-quant-int4"


class TestPluginAlone(PluginAloneSuite):
    dist = DIST

    @pytest.mark.usefixtures("alone")
    def test_with_every_other_plugin_disabled_core_dtypes_and_ours_are_registered(self) -> None:
        core = [p for p in plugin_report().plugins if p.distribution == "mono-quant-core"]
        assert list_dtypes() == sorted([*core[0].dtypes, "int4", "uint4"])


def test_plugin_report_shows_our_schemes_and_dtypes() -> None:
    records = [p for p in plugin_report().plugins if p.distribution == DIST]
    assert [(p.name, p.status, p.schemes, p.dtypes, p.error) for p in records] == [
        ("int4", "loaded", ("int4-symmetric", "int4-asymmetric"), ("int4", "uint4"), None)
    ]
    assert records[0].version == md.version(DIST)
