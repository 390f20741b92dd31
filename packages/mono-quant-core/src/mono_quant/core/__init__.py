"""mono-quant-core: the scheme and observer interfaces, the quant dtype registry and plugin loading."""

from __future__ import annotations

import importlib.metadata as _md

from mono_quant.core._affine import asymmetric_qparams, check_finite, symmetric_qparams
from mono_quant.core._dtypes import Packing, QuantDtype, float_format_max
from mono_quant.core._errors import (
    AxisError,
    CastOverflowError,
    EmptyTensorError,
    GroupSizeError,
    InputDtypeError,
    MonoQuantError,
    NonFiniteError,
    PluginLoadError,
    QParamsError,
    RangeOverflowError,
    RegistryConflictError,
    SchemeContractError,
    UnknownDtypeError,
    UnknownSchemeError,
    UnsupportedDtypeError,
    UnsupportedGranularityError,
    UnsupportedOptionError,
)
from mono_quant.core._floatcodes import (
    decode_float_codes,
    encode_float_codes,
    float_code_qparams,
    float_code_values,
)
from mono_quant.core._granularity import (
    Granularity,
    PerChannel,
    PerGroup,
    PerTensor,
    granularity_from_dict,
)
from mono_quant.core._granules import GranuleLayout, granule_minmax
from mono_quant.core._hookspecs import hookimpl
from mono_quant.core._observer import (
    Observer,
    ObserverCapabilities,
    ObserverContractError,
    ObserverError,
    UnknownObserverError,
)
from mono_quant.core._ops import dequantize, quantization_error, quantize, quantize_with_error
from mono_quant.core._packing import pack, packed_shape, unpack
from mono_quant.core._parallel import block_threads
from mono_quant.core._profile import (
    COMPRESSED_TENSORS_PROFILE,
    DEFAULT_PROFILE,
    PROFILES,
    TORCHAO_PROFILE,
    Profile,
)
from mono_quant.core._qparams import QParams
from mono_quant.core._registry import (
    PluginRecord,
    PluginReport,
    PluginWarning,
    get_dtype,
    get_observer,
    get_scheme,
    list_dtypes,
    list_observers,
    list_schemes,
    plugin_report,
    reload_plugins,
    temporary_dtypes,
)
from mono_quant.core._scheme import Capabilities, MinMaxScheme, Scheme, check_input

try:
    __version__ = _md.version("mono-quant-core")
except _md.PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "COMPRESSED_TENSORS_PROFILE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "TORCHAO_PROFILE",
    "AxisError",
    "Capabilities",
    "CastOverflowError",
    "EmptyTensorError",
    "Granularity",
    "GranuleLayout",
    "GroupSizeError",
    "InputDtypeError",
    "MinMaxScheme",
    "MonoQuantError",
    "NonFiniteError",
    "Observer",
    "ObserverCapabilities",
    "ObserverContractError",
    "ObserverError",
    "Packing",
    "PerChannel",
    "PerGroup",
    "PerTensor",
    "PluginLoadError",
    "PluginRecord",
    "PluginReport",
    "PluginWarning",
    "Profile",
    "QParams",
    "QParamsError",
    "QuantDtype",
    "RangeOverflowError",
    "RegistryConflictError",
    "Scheme",
    "SchemeContractError",
    "UnknownDtypeError",
    "UnknownObserverError",
    "UnknownSchemeError",
    "UnsupportedDtypeError",
    "UnsupportedGranularityError",
    "UnsupportedOptionError",
    "__version__",
    "asymmetric_qparams",
    "block_threads",
    "check_finite",
    "check_input",
    "decode_float_codes",
    "dequantize",
    "encode_float_codes",
    "float_code_qparams",
    "float_code_values",
    "float_format_max",
    "get_dtype",
    "get_observer",
    "get_scheme",
    "granularity_from_dict",
    "granule_minmax",
    "hookimpl",
    "list_dtypes",
    "list_observers",
    "list_schemes",
    "pack",
    "packed_shape",
    "plugin_report",
    "quantization_error",
    "quantize",
    "quantize_with_error",
    "reload_plugins",
    "symmetric_qparams",
    "temporary_dtypes",
    "unpack",
]
