"""The plugin hooks: each returns data (dtype entries, scheme objects, observer classes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mono_quant.core._dtypes import QuantDtype
    from mono_quant.core._observer import Observer
    from mono_quant.core._scheme import Scheme

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "mono_quant_dtypes",
    "mono_quant_observers",
    "mono_quant_schemes",
]

PROJECT_NAME = "mono_quant"
ENTRY_POINT_GROUP = "mono_quant"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate a plugin's hook functions with this, e.g. ``@hookimpl def mono_quant_schemes(): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mono_quant_dtypes() -> Iterable[QuantDtype]:  # type: ignore[empty-body]
    """Return the quant dtypes this plugin registers.

    Each is a :class:`~mono_quant.core.QuantDtype`. Registering a name another
    source registered with different data is an error that names both sources;
    the same data again is harmless.

    >>> from mono_quant.core import QuantDtype, hookimpl
    >>> @hookimpl
    ... def mono_quant_dtypes():
    ...     return [QuantDtype("int6", 6, True, -32, 31, "int8")]
    """


@hookspec
def mono_quant_schemes() -> Iterable[Scheme]:  # type: ignore[empty-body]
    """Return the schemes this plugin provides, as :class:`~mono_quant.core.Scheme` instances.

    Scheme names must be unique across installed plugins: two plugins with the
    same scheme name make the name ambiguous until one of them is disabled.
    """


@hookspec
def mono_quant_observers() -> Iterable[type[Observer]]:  # type: ignore[empty-body]
    """Return the observer classes this plugin provides (:class:`~mono_quant.core.Observer` subclasses).

    Classes, not instances: an observer holds state, so every
    :func:`~mono_quant.core.get_observer` call builds a fresh one. Observer names
    must be unique across installed plugins, as scheme names are.

    >>> from mono_quant.core import hookimpl
    >>> @hookimpl
    ... def mono_quant_observers():
    ...     return []  # e.g. [MyObserver]
    """
