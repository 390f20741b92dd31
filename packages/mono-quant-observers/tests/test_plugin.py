"""mono-quant-observers as a plugin: its five observers, registered through the observer hook."""

from __future__ import annotations

import pytest

from mono_quant.core import (
    ObserverCapabilities,
    UnsupportedOptionError,
    get_observer,
    list_observers,
    plugin_report,
)
from mono_quant.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    __version__,
)

CLASSES = {
    "minmax": MinMaxObserver,
    "moving-average-minmax": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "histogram": HistogramObserver,
    "mse": MSEObserver,
}


def test_the_entry_point_registers_the_five_observers_and_nothing_else() -> None:
    (record,) = [p for p in plugin_report().plugins if p.distribution == "mono-quant-observers"]
    assert record.status == "loaded" and record.error is None
    assert record.observers == tuple(CLASSES) and record.schemes == () and record.dtypes == ()
    assert set(CLASSES) <= set(list_observers())
    assert record.to_dict()["observers"] == list(CLASSES)


@pytest.mark.parametrize("name", list(CLASSES))
def test_get_observer_builds_a_fresh_observer_of_the_class(name: str) -> None:
    a, b = get_observer(name), get_observer(name)
    assert type(a) is CLASSES[name] and a is not b
    assert a.distribution == "mono-quant-observers" and a.version == __version__
    assert isinstance(a.capabilities, ObserverCapabilities) and a.capabilities.reference


def test_declared_order_freedom_and_merge_kinds() -> None:
    caps = {name: cls.capabilities for name, cls in CLASSES.items()}
    assert {n for n, c in caps.items() if c.order_free} == {"minmax", "percentile"}
    assert {n for n, c in caps.items() if c.merge == "approximate"} == {"histogram"}
    assert caps["histogram"].granularities == ("per_tensor",)


def test_unknown_options_are_refused_with_the_list_of_known_ones() -> None:
    with pytest.raises(
        UnsupportedOptionError, match=r"'histogram' does not take option\(s\) bin; it takes: bins"
    ):
        get_observer("histogram", bin=10)
    with pytest.raises(
        UnsupportedOptionError, match=r"averaging_constant must be a number in \(0.0, 1.0\]; got 0"
    ):
        get_observer("moving-average-minmax", averaging_constant=0)
    with pytest.raises(UnsupportedOptionError, match=r"bins must be an integer >= 1; got 2\.5"):
        get_observer("histogram", bins=2.5)
