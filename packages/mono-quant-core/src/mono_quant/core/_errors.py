"""The exception hierarchy: one base class, one subclass per kind of bad input."""

from __future__ import annotations

__all__ = [
    "AxisError",
    "CastOverflowError",
    "EmptyTensorError",
    "GroupSizeError",
    "InputDtypeError",
    "MonoQuantError",
    "NonFiniteError",
    "PluginLoadError",
    "QParamsError",
    "RangeOverflowError",
    "RegistryConflictError",
    "SchemeContractError",
    "UnknownDtypeError",
    "UnknownSchemeError",
    "UnsupportedDtypeError",
    "UnsupportedGranularityError",
    "UnsupportedOptionError",
]


class MonoQuantError(ValueError):
    """Base class of every error mono-quant raises on bad input or configuration.

    It subclasses :class:`ValueError`, so ``except ValueError`` keeps working for
    callers that do not know mono-quant.
    """


class UnknownDtypeError(MonoQuantError, KeyError):
    """A quant dtype name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownSchemeError(MonoQuantError, KeyError):
    """A scheme name that no installed plugin provides."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RegistryConflictError(MonoQuantError):
    """Two sources registered the same name with different data."""


class UnsupportedDtypeError(MonoQuantError):
    """A scheme was asked for a quant dtype it does not declare."""


class UnsupportedGranularityError(MonoQuantError):
    """A scheme was asked for a granularity it does not declare."""


class UnsupportedOptionError(MonoQuantError):
    """A profile parameter or policy that a scheme does not accept."""


class InputDtypeError(MonoQuantError, TypeError):
    """The input tensor is not floating point (integer, bool or complex)."""


class EmptyTensorError(MonoQuantError):
    """The input tensor has no elements, so it has no range."""


class NonFiniteError(MonoQuantError):
    """The input holds NaN or infinite values and the policy is ``raise``."""


class CastOverflowError(MonoQuantError):
    """Finite values that a float target (float16) cannot hold: the cast would give ±inf."""


class RangeOverflowError(MonoQuantError):
    """A finite input whose range overflows the compute dtype, so no finite scale exists."""


class AxisError(MonoQuantError, IndexError):
    """An axis outside ``[-ndim, ndim)``."""


class GroupSizeError(MonoQuantError):
    """A group size that is not positive or does not divide the axis."""


class QParamsError(MonoQuantError):
    """QParams that do not fit the tensor, or a serialized form that cannot be read."""


class SchemeContractError(MonoQuantError):
    """A scheme plugin returned something that breaks the scheme contract."""


class PluginLoadError(MonoQuantError):
    """A plugin failed to load while ``MONO_QUANT_STRICT_PLUGINS=1`` is set."""


# Tracebacks and reprs show the public path (mono_quant.core.NonFiniteError), not _errors.
for _name in __all__:
    globals()[_name].__module__ = "mono_quant.core"
del _name
