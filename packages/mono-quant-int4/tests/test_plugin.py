"""mono-quant-int4 as a plugin: it registers int4/uint4 and the two int4 schemes, nothing else.

``nox -s tests`` installs this distribution alone from its wheel, where the
registry holds exactly these. In a workspace with every plugin installed the
same is checked by disabling the others (``MONO_QUANT_DISABLE_PLUGINS``).
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterator

import pytest

from mono_quant.core import (
    UnknownSchemeError,
    get_scheme,
    list_dtypes,
    list_schemes,
    plugin_report,
    reload_plugins,
)

DIST = "mono-quant-int4"
OWN_SCHEMES = ["int4-asymmetric", "int4-symmetric"]
#: The other first-party scheme distributions and what they register.
OTHERS = {"mono-quant-sym": ("symmetric",), "mono-quant-asym": ("asymmetric",)}


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


def test_plugin_report_shows_our_schemes_and_dtypes() -> None:
    records = [p for p in plugin_report().plugins if p.distribution == DIST]
    assert [(p.name, p.status, p.schemes, p.dtypes, p.error) for p in records] == [
        ("int4", "loaded", ("int4-symmetric", "int4-asymmetric"), ("int4", "uint4"), None)
    ]
    assert records[0].version == md.version(DIST)
    assert all(
        get_scheme(s).distribution == DIST and get_scheme(s).version == md.version(DIST) for s in OWN_SCHEMES
    )


def test_only_our_schemes_are_registered_when_installed_alone() -> None:
    others = sorted(d for d in OTHERS if installed(d))
    if others:
        pytest.skip(
            f"other first-party scheme plugins are installed ({', '.join(others)}); nox -s tests "
            f"runs {DIST} alone from its wheel, and the disabled-plugins test covers this here"
        )
    assert list_schemes() == OWN_SCHEMES


@pytest.mark.usefixtures("alone")
def test_with_every_other_plugin_disabled_only_our_names_are_registered() -> None:
    assert list_schemes() == OWN_SCHEMES
    core = [p for p in plugin_report().plugins if p.distribution == "mono-quant-core"]
    assert list_dtypes() == sorted([*core[0].dtypes, "int4", "uint4"])


@pytest.mark.usefixtures("alone")
@pytest.mark.parametrize(("scheme", "dist"), [(s, d) for d, names in OTHERS.items() for s in names])
def test_asking_for_another_first_party_scheme_names_its_distribution(scheme: str, dist: str) -> None:
    with pytest.raises(UnknownSchemeError) as info:
        get_scheme(scheme)
    msg = str(info.value)
    hint = f"{dist} is installed but disabled" if installed(dist) else f"Install {dist} to use it"
    assert f"{scheme!r} is not an installed scheme. {hint}" in msg
    assert msg.endswith("Installed schemes: int4-asymmetric, int4-symmetric.")
