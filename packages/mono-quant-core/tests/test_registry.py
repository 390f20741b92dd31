"""temporary_dtypes: dtypes registered for a block (the conformance suite's synthetic ones)."""

from __future__ import annotations

import pytest

from mono_quant.core import (
    QuantDtype,
    RegistryConflictError,
    get_dtype,
    list_dtypes,
    reload_plugins,
    temporary_dtypes,
)

INT3 = QuantDtype("core-test-int3", 3, True, -4, 3, "int8")


def test_a_temporary_dtype_exists_inside_the_block_only() -> None:
    with temporary_dtypes([INT3], source="test") as added:
        assert added == ["core-test-int3"]
        assert get_dtype("core-test-int3") == INT3 and "core-test-int3" in list_dtypes()
    assert "core-test-int3" not in list_dtypes()


def test_an_existing_dtype_with_the_same_data_is_left_in_place() -> None:
    int8 = get_dtype("int8")
    with temporary_dtypes([int8, INT3], source="test") as added:
        assert added == ["core-test-int3"]
    assert get_dtype("int8") == int8


def test_another_definition_of_a_registered_name_is_refused_naming_both() -> None:
    other = QuantDtype("int8", 8, True, -127, 127, "int8")
    refused = pytest.raises(
        RegistryConflictError, match=r"'int8' from test differs from the one mono-quant-core"
    )
    with refused, temporary_dtypes([other], source="test"):
        pass  # pragma: no cover
    assert get_dtype("int8").qmin == -128


def test_blocks_nest_and_a_reload_forgets_them() -> None:
    with temporary_dtypes([INT3], source="outer"), temporary_dtypes([INT3], source="inner") as inner:
        assert inner == []  # already there: the outer block owns it
        reload_plugins()
        assert "core-test-int3" not in list_dtypes()
    assert "core-test-int3" not in list_dtypes()


def test_only_quant_dtypes_are_accepted() -> None:
    refused = pytest.raises(TypeError, match="QuantDtype entries, got str")
    with refused, temporary_dtypes(["int3"], source="test"):  # type: ignore[list-item]
        pass  # pragma: no cover
