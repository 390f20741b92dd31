"""mono-quant-asym as a plugin: it registers ``asymmetric`` and nothing else.

``nox -s tests`` installs this distribution alone from its wheel, where the
registry holds exactly its scheme. In a workspace with every plugin installed the
same is checked by disabling the others (:class:`~mono_quant.conformance.differential.PluginAloneSuite`).
"""

from __future__ import annotations

import importlib.metadata as md

import pytest

from mono_quant.asym import AsymmetricScheme
from mono_quant.conformance.differential import PluginAloneSuite
from mono_quant.core import UnknownDtypeError, get_dtype, get_scheme, plugin_report

DIST = "mono-quant-asym"


class TestPluginAlone(PluginAloneSuite):
    dist = DIST

    @pytest.mark.usefixtures("alone")
    def test_asking_for_int4_names_mono_quant_int4(self) -> None:
        with pytest.raises(UnknownDtypeError) as info:
            get_dtype("int4")
        int4 = "mono-quant-int4"
        hint = f"{int4} is installed but disabled" if int4 in self.installed_others() else f"Install {int4}"
        assert hint in str(info.value)


def test_plugin_report_shows_our_scheme_and_no_dtype() -> None:
    records = [p for p in plugin_report().plugins if p.distribution == DIST]
    assert [(p.name, p.status, list(p.schemes), p.dtypes, p.error) for p in records] == [
        ("asym", "loaded", ["asymmetric"], (), None)
    ]
    assert records[0].version == md.version(DIST)


def test_get_scheme_is_ours_with_claims() -> None:
    scheme = get_scheme("asymmetric")
    assert isinstance(scheme, AsymmetricScheme)
    caps = scheme.capabilities
    assert caps.dtypes is None  # every registered integer dtype
    assert not caps.symmetric and caps.golden == "torch.ao"
    assert set(caps.profiles) == {"default", "torchao", "custom"}
    assert caps.nonfinite == ("raise",) and caps.nondivisible == ("raise", "pad")
