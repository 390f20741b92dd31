"""A well-behaved plugin: one dtype and one scheme."""

from mono_quant.core import Capabilities, MinMaxScheme, QuantDtype, asymmetric_qparams, hookimpl


class GoodScheme(MinMaxScheme):
    name = "test-good"
    version = "0.0.1"
    capabilities = Capabilities(profiles=("default", "torchao", "custom"))

    def qparams_from_range(self, lo, hi, dtype):
        return asymmetric_qparams(lo, hi, dtype, self.profile)


@hookimpl
def mono_quant_dtypes():
    return [QuantDtype("int6", 6, True, -32, 31, "int8")]


@hookimpl
def mono_quant_schemes():
    return [GoodScheme()]
