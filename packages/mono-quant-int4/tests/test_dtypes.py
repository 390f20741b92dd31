"""The int4/uint4 registry entries are the data the docs describe."""

from __future__ import annotations

import torch

from mono_quant.core import Packing, QuantDtype, get_dtype
from mono_quant.int4 import INT4, INT4_PACKING, UINT4, UINT4_PACKING


def test_int4_is_signed_minus_8_to_7_held_in_int8_and_stored_with_offset_8() -> None:
    assert get_dtype("int4") == INT4
    assert (INT4.bits, INT4.signed, INT4.qmin, INT4.qmax, INT4.levels) == (4, True, -8, 7, 16)
    assert INT4.torch_dtype == torch.int8 and not INT4.is_float
    assert INT4.packing == INT4_PACKING
    assert (
        Packing(bits=4, per_container=2, container="uint8", axis=-1, order="low_first", offset=8)
        == INT4_PACKING
    )


def test_uint4_is_unsigned_0_to_15_held_in_uint8_and_stored_as_is() -> None:
    assert get_dtype("uint4") == UINT4
    assert (UINT4.bits, UINT4.signed, UINT4.qmin, UINT4.qmax, UINT4.levels) == (4, False, 0, 15, 16)
    assert UINT4.torch_dtype == torch.uint8
    assert UINT4.packing == UINT4_PACKING
    assert (
        Packing(bits=4, per_container=2, container="uint8", axis=-1, order="low_first", offset=0)
        == UINT4_PACKING
    )


def test_entries_round_trip_through_their_dict_form() -> None:
    for entry in (INT4, UINT4):
        data = entry.to_dict()
        packing = data.pop("packing")
        assert isinstance(packing, dict)
        rebuilt = QuantDtype(**data, packing=Packing.from_dict(packing))  # type: ignore[arg-type]
        assert rebuilt == entry
    assert INT4.to_dict()["packing"] == {
        "bits": 4,
        "per_container": 2,
        "container": "uint8",
        "axis": -1,
        "order": "low_first",
        "offset": 8,
    }
