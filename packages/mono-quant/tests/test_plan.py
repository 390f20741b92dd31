from __future__ import annotations

import pytest

from mono_quant.cli._errors import UsageError
from mono_quant.cli._plan import make_plan
from mono_quant.core import (
    PerChannel,
    PerGroup,
    PerTensor,
    UnknownDtypeError,
    UnknownSchemeError,
    UnsupportedDtypeError,
    UnsupportedOptionError,
    list_dtypes,
    list_schemes,
)


def test_defaults_are_asymmetric_int8_per_channel_axis_0():
    p = make_plan()
    assert (p.scheme.name, p.dtype.name, p.granularity) == ("asymmetric", "int8", PerChannel(0))


def test_int4_schemes_default_to_their_group_of_128():
    p = make_plan(scheme="int4-symmetric")
    assert (p.dtype.name, p.granularity) == ("int4", PerGroup(-1, 128))


def test_group_size_alone_means_per_group():
    assert make_plan(scheme="symmetric", group_size=32).granularity == PerGroup(-1, 32)


def test_named_granularities_take_axis_and_group_size():
    assert make_plan(granularity="per-tensor").granularity == PerTensor()
    assert make_plan(granularity="per-channel", axis=1).granularity == PerChannel(1)
    assert make_plan(granularity="per-group", axis=0, group_size=16).granularity == PerGroup(0, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"granularity": "per-channel", "group_size": 8}, "group_size applies to per-group only"),
        ({"granularity": "per-tensor", "axis": 1}, "per-tensor takes neither"),
        ({"granularity": "blockwise"}, "unknown granularity 'blockwise'"),
        ({"nonfinite": "ignore"}, "nonfinite must be one of raise, skip; got 'ignore'"),
        ({"nondivisible": "drop"}, "nondivisible must be one of raise, pad, skip; got 'drop'"),
        ({"group_size": 0}, "group_size must be a whole number of at least 1; got 0"),
        ({"group_size": -4}, "group_size must be a whole number of at least 1; got -4"),
    ],
)
def test_inconsistent_options_are_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        make_plan(**kwargs)


def test_unknown_scheme_lists_the_installed_ones():
    with pytest.raises(UnknownSchemeError) as info:
        make_plan(scheme="no-such-scheme")
    for name in list_schemes():
        assert name in str(info.value)


def test_unknown_dtype_lists_the_registered_ones():
    with pytest.raises(UnknownDtypeError) as info:
        make_plan(dtype="int3")
    for name in list_dtypes():
        assert name in str(info.value)


def test_dtype_the_scheme_does_not_declare_is_refused_before_reading():
    with pytest.raises(UnsupportedDtypeError, match="int4-symmetric"):
        make_plan(scheme="int4-symmetric", dtype="int8")


def test_unknown_profile_is_refused():
    with pytest.raises(UnsupportedOptionError, match="nope"):
        make_plan(profile="nope")
