"""Granularities: the shape contract for every axis of 1-D to 4-D tensors, and errors."""

from __future__ import annotations

import pytest

from mono_quant.core import (
    AxisError,
    GroupSizeError,
    MonoQuantError,
    PerChannel,
    PerGroup,
    PerTensor,
    granularity_from_dict,
)

SHAPES = [(6,), (4, 6), (2, 4, 6), (2, 3, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES)
def test_per_tensor_qparams_are_scalars(shape: tuple[int, ...]) -> None:
    assert PerTensor().qparam_shape(shape) == ()


@pytest.mark.parametrize(("shape", "axis"), [(s, a) for s in SHAPES for a in range(-len(s), len(s))])
def test_per_channel_qparams_have_the_axis_length(shape: tuple[int, ...], axis: int) -> None:
    assert PerChannel(axis).qparam_shape(shape) == (shape[axis],)
    assert PerChannel(axis).normalize(len(shape)).axis == axis % len(shape)


@pytest.mark.parametrize(
    ("shape", "axis", "group"),
    [(s, a, g) for s in SHAPES for a in range(-len(s), len(s)) for g in (1, 2) if s[a] % g == 0],
)
def test_per_group_replaces_the_axis_by_the_group_count(
    shape: tuple[int, ...], axis: int, group: int
) -> None:
    expected = list(shape)
    expected[axis] = shape[axis] // group
    assert PerGroup(axis, group).qparam_shape(shape) == tuple(expected)


@pytest.mark.parametrize(("size", "group", "count"), [(10, 4, 3), (7, 2, 4), (5, 8, 1), (8, 4, 2)])
def test_pad_rounds_the_group_count_up(size: int, group: int, count: int) -> None:
    assert PerGroup(0, group).group_count(size, nondivisible="pad") == count


def test_non_divisible_group_raises_with_both_sizes() -> None:
    with pytest.raises(GroupSizeError) as info:
        PerGroup(1, 128).qparam_shape((4, 300), name="encoder.0.weight")
    message = str(info.value)
    assert "group_size must divide dimension 1 of 'encoder.0.weight' (size 300); got 128" in message
    assert "nondivisible='pad'" in message


@pytest.mark.parametrize(("axis", "ndim"), [(2, 2), (-3, 2), (0, 0), (5, 4)])
def test_axis_out_of_range_names_the_valid_axes(axis: int, ndim: int) -> None:
    shape = (3,) * ndim
    with pytest.raises(AxisError) as info:
        PerChannel(axis).qparam_shape(shape, name="w")
    message = str(info.value)
    assert f"axis {axis} is out of range for 'w' with {ndim} dimension(s)" in message
    assert (f"[{-ndim}, {ndim - 1}]" if ndim else "0-d") in message
    assert isinstance(info.value, IndexError)


@pytest.mark.parametrize("bad", [0, -4, 2.0, True])
def test_group_size_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(GroupSizeError, match=r"group_size must be a positive int"):
        PerGroup(0, bad)  # type: ignore[arg-type]


def test_axis_must_be_an_int() -> None:
    with pytest.raises(AxisError, match=r"axis must be an int, got float 1\.0"):
        PerChannel(1.0).normalize(2)  # type: ignore[arg-type]


@pytest.mark.parametrize("g", [PerTensor(), PerChannel(-2), PerGroup(3, 32)])
def test_granularities_round_trip_through_dicts(g: PerTensor | PerChannel | PerGroup) -> None:
    assert granularity_from_dict(g.to_dict()) == g


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"kind": "per_block"}, "unknown granularity kind 'per_block'"),
        ({"kind": "per_group", "axis": 0}, "group_size"),
    ],
)
def test_malformed_granularity_dicts_are_refused(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(MonoQuantError, match=fragment):
        granularity_from_dict(data)


def test_every_axis_of_every_rank_is_covered() -> None:
    # Guard that the parametrization above really spans 1-D..4-D and all axes.
    covered = {(len(s), a) for s in SHAPES for a in range(-len(s), len(s))}
    assert covered == {(n, a) for n in range(1, 5) for a in range(-n, n)}
