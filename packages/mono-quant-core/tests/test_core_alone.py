"""Core alone, as `pip install mono-quant-core` gives it: built-in dtypes, no schemes."""

from __future__ import annotations

import importlib.metadata as md
import os

import pytest

from mono_quant.core import UnknownSchemeError, get_scheme, list_dtypes, list_schemes, plugin_report

FIRST_PARTY = ("mono-quant-sym", "mono-quant-asym", "mono-quant-int4")


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


@pytest.fixture
def core_alone() -> None:
    others = [p.distribution for p in plugin_report().plugins if p.distribution != "mono-quant-core"]
    if others and os.environ.get("MONO_QUANT_TEST_ALONE") == "1":
        pytest.fail(f"MONO_QUANT_TEST_ALONE=1 but other plugins are installed: {others}")
    if others:
        pytest.skip(f"other plugins are installed here ({', '.join(others)}); nox -s tests runs core alone")


@pytest.mark.usefixtures("core_alone")
def test_core_alone_has_the_builtin_dtypes_and_no_scheme() -> None:
    assert list_dtypes() == [
        "bfloat16",
        "float16",
        "float8_e4m3fn",
        "float8_e5m2",
        "int16",
        "int32",
        "int8",
        "uint8",
    ]
    assert list_schemes() == []
    assert [p.distribution for p in plugin_report().plugins] == ["mono-quant-core"]
    assert not any(_installed(d) for d in FIRST_PARTY)


@pytest.mark.usefixtures("core_alone")
@pytest.mark.parametrize(
    ("scheme", "dist"),
    [
        ("asymmetric", "mono-quant-asym"),
        ("symmetric", "mono-quant-sym"),
        ("int4-symmetric", "mono-quant-int4"),
    ],
)
def test_asking_for_a_first_party_scheme_says_what_to_install(scheme: str, dist: str) -> None:
    with pytest.raises(UnknownSchemeError) as info:
        get_scheme(scheme)
    message = str(info.value)
    assert f"{scheme!r} is not an installed scheme. Install {dist} to use it." in message
    assert "Installed schemes: none." in message


def test_core_reports_itself_first_with_its_version() -> None:
    first = plugin_report().plugins[0]
    assert (first.name, first.distribution, first.status) == ("core", "mono-quant-core", "loaded")
    assert first.version == md.version("mono-quant-core")
