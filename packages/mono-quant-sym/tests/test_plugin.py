"""mono-quant-sym as a plugin: it registers ``symmetric`` and nothing else.

``nox -s tests`` installs this distribution alone from its wheel, where the
registry holds exactly its scheme. In a workspace with every plugin installed the
same is checked by disabling the others (``MONO_QUANT_DISABLE_PLUGINS``).
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterator

import pytest

from mono_quant.core import (
    UnknownDtypeError,
    UnknownSchemeError,
    get_dtype,
    get_scheme,
    list_schemes,
    plugin_report,
    reload_plugins,
)
from mono_quant.sym import SymmetricScheme

DIST = "mono-quant-sym"
OWN_SCHEMES = ["symmetric"]
#: The other first-party scheme distributions and what they register.
OTHERS = {"mono-quant-asym": ("asymmetric",), "mono-quant-int4": ("int4-symmetric", "int4-asymmetric")}


def installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def plugin_distributions() -> set[str]:
    return {ep.dist.name for ep in md.entry_points(group="mono_quant") if ep.dist is not None}


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry as if only mono-quant-core and this distribution were installed."""
    others = sorted(plugin_distributions() - {DIST})
    if others:
        monkeypatch.setenv("MONO_QUANT_DISABLE_PLUGINS", ",".join(others))
    reload_plugins()
    yield
    monkeypatch.undo()
    reload_plugins()


def test_plugin_report_shows_our_scheme_and_no_dtype() -> None:
    records = [p for p in plugin_report().plugins if p.distribution == DIST]
    assert [(p.name, p.status, list(p.schemes), p.dtypes, p.error) for p in records] == [
        ("sym", "loaded", OWN_SCHEMES, (), None)
    ]
    assert records[0].version == md.version(DIST)


def test_get_scheme_is_ours_with_distribution_version_and_claims() -> None:
    scheme = get_scheme("symmetric")
    assert isinstance(scheme, SymmetricScheme)
    assert (scheme.distribution, scheme.version) == (DIST, md.version(DIST))
    caps = scheme.capabilities
    assert caps.dtypes is None  # every registered integer dtype
    assert caps.symmetric and caps.golden == "torch.ao"
    assert set(caps.profiles) == {"default", "torchao", "custom"}
    assert caps.nonfinite == ("raise",) and caps.nondivisible == ("raise", "pad")


def test_only_our_scheme_is_registered_when_installed_alone() -> None:
    others = sorted(d for d in OTHERS if installed(d))
    if others:
        pytest.skip(
            f"other first-party scheme plugins are installed ({', '.join(others)}); nox -s tests "
            f"runs {DIST} alone from its wheel, and the disabled-plugins test covers this here"
        )
    assert list_schemes() == OWN_SCHEMES


@pytest.mark.usefixtures("alone")
def test_with_every_other_plugin_disabled_only_our_scheme_is_registered() -> None:
    assert list_schemes() == OWN_SCHEMES


@pytest.mark.usefixtures("alone")
@pytest.mark.parametrize(("scheme", "dist"), [(s, d) for d, names in OTHERS.items() for s in names])
def test_asking_for_another_first_party_scheme_names_its_distribution(scheme: str, dist: str) -> None:
    with pytest.raises(UnknownSchemeError) as info:
        get_scheme(scheme)
    msg = str(info.value)
    hint = f"{dist} is installed but disabled" if installed(dist) else f"Install {dist} to use it"
    assert f"{scheme!r} is not an installed scheme. {hint}" in msg
    assert msg.endswith("Installed schemes: symmetric.")


@pytest.mark.usefixtures("alone")
def test_asking_for_int4_names_mono_quant_int4() -> None:
    with pytest.raises(UnknownDtypeError) as info:
        get_dtype("int4")
    hint = (
        "mono-quant-int4 is installed but disabled"
        if installed("mono-quant-int4")
        else "Install mono-quant-int4"
    )
    assert hint in str(info.value)
