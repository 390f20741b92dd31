"""A plugin with one marked hook and one it forgot to mark."""

from mono_quant.core import QuantDtype, hookimpl


def mono_quant_dtypes():
    return [QuantDtype("int3", 3, True, -4, 3, "int8")]


@hookimpl
def mono_quant_schemes():
    return []
