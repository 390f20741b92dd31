"""Each property of issue 10 catches its broken plugin, under any name; each correct twin passes.

The broken plugins and their twins are in broken_properties.py. A plugin is
renamed ten times (scheme and distribution): it must fail its intended check
every time, on the same cases with the same hypothesis seeds, so detection does
not depend on what a plugin is called.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from broken_properties import DETECTIONS, Detection
from broken_schemes import DETECTIONS as OLD_DETECTIONS

from mono_quant.conformance import Results, run
from mono_quant.core import Scheme, list_dtypes, reload_plugins

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "checks.md"

#: Ten names a plugin author might pick: (scheme name, distribution name).
NAMES = [
    ("q", "q"),
    ("acme-int8", "acme-quant"),
    ("symmetric-fast", "mono-quant-sym-fast"),
    ("my_scheme", "my_plugin"),
    ("Scheme.V2", "Company.Quant"),
    ("zz" * 30, "long-" * 10 + "dist"),
    ("nf4-ish", "bnb-compat"),
    ("x1", "x2"),
    ("int4-asymmetric-gptq", "gptq-tools"),
    ("a-b-c-d", "d-c-b-a"),
]

_IDS = [f"{d.number}-{d.broken.name}" for d in DETECTIONS]


@pytest.fixture
def only_core_dtypes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry without other plugins' dtypes: core's int8/uint8/int16/int32, as in a plugin's CI."""
    monkeypatch.setenv("MONO_QUANT_DISABLE_PLUGINS", "all")
    reload_plugins()
    yield
    monkeypatch.undo()
    reload_plugins()


def _needs(twin: type[Scheme], request: pytest.FixtureRequest) -> None:
    """Core's dtypes only, as in a plugin's own CI, unless the plugin needs mono-quant-int4's.

    So what fails does not depend on which other plugins are installed here.
    """
    if twin.__name__ != "Int4Twin":
        request.getfixturevalue("only_core_dtypes")
    elif "int4" not in list_dtypes():
        pytest.skip("needs mono-quant-int4's int4/uint4 dtypes")


def renamed(detection: Detection, scheme_name: str, distribution: str) -> Scheme:
    """The broken plugin under another scheme and distribution name, otherwise the same class."""
    cls = type(detection.broken.__name__, (detection.broken,), {"name": scheme_name})
    scheme: Scheme = cls()
    scheme.distribution = distribution
    return scheme


def failed_cases(results: Results) -> list[tuple[str, int | None]]:
    """The failing cases and their seeds, without the plugin's names."""
    return sorted((r.case, r.seed) for r in results.failed)


@pytest.mark.parametrize("detection", DETECTIONS, ids=_IDS)
def test_a_broken_plugin_fails_its_check_whatever_it_is_called(
    detection: Detection, request: pytest.FixtureRequest
) -> None:
    _needs(detection.twin, request)
    seen: list[list[tuple[str, int | None]]] = []
    for scheme_name, distribution in NAMES:
        results = run(
            [renamed(detection, scheme_name, distribution)], checks=[detection.check], max_examples=3
        )
        failed = results.failed
        assert failed, f"{detection.broken.name} as {scheme_name!r} ({distribution}) passed {detection.check}"
        assert any(detection.phrase in r.message for r in failed), failed[0].message
        assert f"[{distribution}:{scheme_name}] {detection.check}" in failed[0].message
        if detection.number == 8:  # caught on the suite's synthetic dtypes, as core's own are fine
            assert all(r.case.startswith("synthetic-") for r in failed), [r.id for r in failed]
        seen.append(failed_cases(results))
    assert all(cases == seen[0] for cases in seen), "the failing cases or seeds depend on the plugin's name"


@pytest.mark.parametrize(
    "detection", [d for d in DETECTIONS if d.also is not None], ids=lambda d: d.broken.name
)
def test_a_broken_plugin_fails_only_the_checks_of_its_property(
    detection: Detection, request: pytest.FixtureRequest
) -> None:
    _needs(detection.twin, request)
    results = run([detection.broken()], max_examples=3)
    assert detection.also is not None
    assert {r.check for r in results.failed} == {detection.check, *detection.also}, [
        r.message.splitlines()[0] for r in results.failed
    ]


TWINS = sorted({d.twin for d in DETECTIONS}, key=lambda t: t.__name__)


@pytest.mark.parametrize("twin", TWINS, ids=[t.__name__ for t in TWINS])
def test_the_correct_twin_of_every_broken_plugin_passes_the_whole_suite(
    twin: type[Scheme], request: pytest.FixtureRequest
) -> None:
    _needs(twin, request)
    results = run([twin()], max_examples=3)
    assert results.ok, "\n\n".join(r.message for r in results.failed[:3])
    assert results.counts()["passed"] > 20


def test_a_scheme_claiming_every_dtype_is_checked_on_the_synthetic_dtypes_too(only_core_dtypes: None) -> None:
    from broken_properties import EveryDtypeTwin

    results = run([EveryDtypeTwin()], checks=["check_round_trip_error_within_half_scale"], max_examples=1)
    dtypes = {r.case.split("-per_")[0] for r in results}
    assert {"int8", "uint8", "int16", "int32"} <= dtypes
    assert {"synthetic-int3", "synthetic-uint4", "synthetic-int12", "synthetic-uint16"} <= dtypes
    assert "synthetic-codebook4" not in dtypes  # a codebook is no affine dtype
    assert not any(d.startswith("synthetic-") for d in list_dtypes())  # registered for the run only


def test_the_docs_table_lists_every_broken_plugin_with_its_property_and_check() -> None:
    if not DOCS.is_file():
        pytest.skip("docs/ is not beside this checkout")
    rows = re.findall(r"^\| (\d+|—) \| [^|]+ \| `(check_\w+)` \| `([\w-]+)` \|", DOCS.read_text(), re.M)
    table = {(number, check, plugin) for number, check, plugin in rows}
    wanted = {(str(d.number), d.check, d.broken.name) for d in DETECTIONS}
    wanted |= {("—", check, broken.name) for broken, check, _ in OLD_DETECTIONS}
    assert table == wanted, (
        f"missing: {sorted(wanted - table)}; not a broken plugin: {sorted(table - wanted)}"
    )


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "write-a-plugin.md"


def test_the_scheme_the_plugin_guide_writes_from_scratch_passes_the_whole_suite(
    only_core_dtypes: None,
) -> None:
    if not GUIDE.is_file():
        pytest.skip("docs/ is not beside this checkout")
    blocks = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.S | re.M)
    (source,) = [b for b in blocks if "class PowerOfTwoScheme" in b]
    namespace: dict[str, object] = {}
    exec(compile(source, str(GUIDE), "exec"), namespace)
    scheme = namespace["PowerOfTwoScheme"]()
    assert isinstance(scheme, Scheme)
    results = run([scheme], max_examples=3)
    assert results.ok, "\n\n".join(r.message for r in results.failed[:3])
