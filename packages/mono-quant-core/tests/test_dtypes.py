"""The quant dtype registry: built-ins, lookups, validation of entries."""

from __future__ import annotations

import pytest
import torch

from mono_quant.core import (
    Packing,
    QuantDtype,
    UnknownDtypeError,
    get_dtype,
    list_dtypes,
)

BUILTINS = {
    "int8": (-128, 127, torch.int8),
    "uint8": (0, 255, torch.uint8),
    "int16": (-32768, 32767, torch.int16),
    "int32": (-(2**31), 2**31 - 1, torch.int32),
}


@pytest.mark.parametrize(("name", "expected"), sorted(BUILTINS.items()))
def test_builtin_integer_dtypes_have_their_ranges(name: str, expected: tuple[int, int, torch.dtype]) -> None:
    d = get_dtype(name)
    assert (d.qmin, d.qmax, d.torch_dtype) == expected
    assert d.kind == "int" and d.packing is None
    info = torch.iinfo(d.torch_dtype)
    assert (d.qmin, d.qmax) == (info.min, info.max)
    assert d.levels == d.qmax - d.qmin + 1 == 2**d.bits


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_float_targets_are_passthrough_entries(name: str) -> None:
    d = get_dtype(name)
    assert d.is_float and d.qmin is None and d.qmax is None
    assert d.torch_dtype == getattr(torch, name)
    assert d.levels == 0


def test_list_dtypes_is_sorted_and_holds_the_builtins() -> None:
    names = list_dtypes()
    assert names == sorted(names)
    assert {"int8", "uint8", "int16", "int32", "float16", "bfloat16"} <= set(names)


def test_unknown_dtype_lists_registered_names_and_the_providing_distribution() -> None:
    with pytest.raises(UnknownDtypeError) as info:
        get_dtype("int4-nope")
    message = str(info.value)
    assert "'int4-nope' is not a registered quant dtype" in message
    for name in ("int8", "uint8", "float16"):
        assert name in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)


def test_unknown_int4_names_mono_quant_int4_when_it_is_not_installed() -> None:
    if "int4" in list_dtypes():
        pytest.skip("mono-quant-int4 is installed here; the hint applies when it is not")
    with pytest.raises(UnknownDtypeError, match="Install mono-quant-int4 to use it"):
        get_dtype("int4")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"qmin": 5, "qmax": 5}, "qmin (5) must be below qmax (5)"),
        ({"qmin": -200, "qmax": 127}, "does not fit 8 signed bits ([-128, 127])"),
        ({"code_dtype": "int64"}, "code_dtype must be one of"),
        ({"qmin": None}, "an integer dtype needs qmin and qmax"),
        ({"kind": "complex"}, "kind must be 'int' or 'float' (a cast target), or 'float_code'"),
        ({"code_dtype": "float8_e4m3fn"}, "an integer dtype holds codes in one of"),
        ({"max_value": 448.0}, "max_value describe a float code format; they need kind='float_code'"),
        ({"bits": 4, "qmin": -8, "qmax": 7, "packing": Packing(bits=2, per_container=4)}, "packing.bits (2)"),
        (
            {"bits": 4, "qmin": -8, "qmax": 7, "packing": Packing(bits=4, per_container=3)},
            "do not fit one uint8",
        ),
        (
            {"bits": 4, "qmin": -8, "qmax": 7, "packing": Packing(bits=4, per_container=2)},
            "offset 0 does not map",
        ),
    ],
)
def test_invalid_entries_are_refused_with_the_reason(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {
        "name": "bad",
        "bits": 8,
        "signed": True,
        "qmin": -128,
        "qmax": 127,
        "code_dtype": "int8",
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match="invalid quant dtype 'bad'") as info:
        QuantDtype(**base)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_float_target_with_a_range_is_refused() -> None:
    with pytest.raises(ValueError, match="a float target has no qmin/qmax"):
        QuantDtype("f", 16, True, 0, 1, "float16", kind="float")


def test_entries_are_data_compared_by_value_and_serializable() -> None:
    a = QuantDtype("x4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
    b = QuantDtype("x4", 4, True, -8, 7, "int8", packing=Packing(4, 2, offset=8))
    assert a == b and hash(a) == hash(b)
    data = a.to_dict()
    assert data["packing"] == {
        "bits": 4,
        "per_container": 2,
        "container": "uint8",
        "axis": -1,
        "order": "low_first",
        "offset": 8,
    }
    assert Packing.from_dict(data["packing"]) == a.packing  # type: ignore[arg-type]


def test_codebook_dtypes_are_refused_by_schemes_that_take_every_integer_dtype() -> None:
    from mono_quant.core import Capabilities, MinMaxScheme, UnsupportedDtypeError, asymmetric_qparams

    class Any(MinMaxScheme):
        name, version, capabilities = "any", "1", Capabilities(dtypes=None)

        def qparams_from_range(
            self, lo: torch.Tensor, hi: torch.Tensor, dtype: QuantDtype
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return asymmetric_qparams(lo, hi, dtype, self.profile)

    nf = QuantDtype("nf-test", 4, False, 0, 15, "uint8", affine=False)
    assert Any().supports_dtype(get_dtype("uint8")) and not Any().supports_dtype(nf)
    with pytest.raises(UnsupportedDtypeError, match="it supports: every affine integer dtype"):
        Any().compute_qparams(torch.ones(3), nf)
    with pytest.raises(ValueError, match="a float target cannot be a codebook"):
        QuantDtype("f", 16, True, None, None, "float16", kind="float", affine=False)


def test_entries_round_trip_through_their_dict_form() -> None:
    for name in list_dtypes():
        d = get_dtype(name)
        assert QuantDtype.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match=r"unknown quant dtype field\(s\) \['colour'\]"):
        QuantDtype.from_dict({**get_dtype("int8").to_dict(), "colour": "red"})
