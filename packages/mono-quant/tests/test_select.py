from __future__ import annotations

import pytest
import torch

from mono_quant.cli._select import Selection, select_modules


@pytest.mark.parametrize(
    ("name", "dtype", "shape", "expected"),
    [
        ("fc.weight", torch.float32, (4, 8), True),
        ("conv.weight", torch.bfloat16, (4, 2, 3, 3), True),
        ("fc.bias", torch.float32, (4,), False),
        ("norm.weight", torch.float16, (8,), False),
        ("ids", torch.int64, (1, 16), False),
        ("scalar", torch.float32, (), False),
        ("empty.weight", torch.float32, (0, 4), False),
    ],
)
def test_default_rule_quantizes_floating_tensors_with_two_or_more_dims(name, dtype, shape, expected):
    assert Selection().decide(name, dtype, shape)[0] is expected


def test_include_narrows_the_default_rule_by_name():
    s = Selection(include=("layers.*",))
    assert s.decide("layers.0.fc.weight", torch.float32, (4, 8)) == (True, "included by layers.*")
    assert s.decide("layers.0.fc.bias", torch.float32, (4,))[0] is False  # still 1-D
    assert s.decide("head.weight", torch.float32, (4, 8)) == (False, "not matched by --include")


def test_include_never_selects_integer_tensors():
    assert Selection(include=("*",)).decide("ids", torch.int64, (4, 4))[0] is False


def test_exclude_wins_over_include():
    s = Selection(include=("layers.*",), exclude=("layers.0.*",))
    assert s.decide("layers.0.fc.weight", torch.float32, (4, 4))[0] is False
    assert s.decide("layers.1.fc.weight", torch.float32, (4, 4))[0] is True


def test_names_select_exactly_whatever_the_rank():
    s = Selection(names=frozenset({"a.weight", "norm.weight"}))
    assert s.decide("a.weight", torch.float32, (2, 2))[0] is True
    assert s.decide("norm.weight", torch.float32, (2,))[0] is True
    assert s.decide("b.weight", torch.float32, (2, 2))[0] is False


class PlainLinear(torch.nn.Linear):
    """A subclass that keeps Linear's forward."""


class ScaledLinear(torch.nn.Linear):
    """A subclass whose forward does something else with its weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def _model() -> torch.nn.Module:
    m = torch.nn.Module()
    m.fc = torch.nn.Linear(4, 4)
    m.plain = PlainLinear(4, 4)
    m.scaled = ScaledLinear(4, 4)
    m.conv = torch.nn.Conv2d(2, 2, 3)
    m.emb = torch.nn.Embedding(10, 4)
    m.norm = torch.nn.LayerNorm(4)
    return m


def test_select_modules_picks_linear_conv_and_subclasses_that_keep_forward():
    names, passed = select_modules(_model())
    assert names == ["fc.weight", "plain.weight", "conv.weight"]
    assert [n for n, _ in passed] == ["scaled"]
    assert "ScaledLinear subclasses Linear but defines its own forward" in passed[0][1]


def test_select_modules_adds_embeddings_on_request_and_named_subclasses():
    names, passed = select_modules(_model(), types=(torch.nn.Linear, ScaledLinear), embeddings=True)
    assert names == ["fc.weight", "plain.weight", "scaled.weight", "emb.weight"]
    assert passed == []
