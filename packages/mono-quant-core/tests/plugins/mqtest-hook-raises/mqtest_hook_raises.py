"""A plugin whose scheme hook raises."""

from mono_quant.core import QuantDtype, hookimpl


@hookimpl
def mono_quant_dtypes():
    return [QuantDtype("int5", 5, True, -16, 15, "int8")]


@hookimpl
def mono_quant_schemes():
    raise RuntimeError("boom from mqtest-hook-raises")
