"""Granularity: which elements share one scale and zero-point, and the shape contract."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mono_quant.core._errors import AxisError, GroupSizeError, MonoQuantError

__all__ = [
    "Granularity",
    "NonDivisiblePolicy",
    "PerChannel",
    "PerGroup",
    "PerTensor",
    "granularity_from_dict",
]

NonDivisiblePolicy = Literal["raise", "pad"]


def _tensor_label(name: str | None) -> str:
    return f"{name!r}" if name else "the input tensor"


def normalize_axis(axis: int, ndim: int, *, name: str | None = None, what: str = "axis") -> int:
    """``axis`` as a non-negative index into ``ndim`` dimensions, or :class:`AxisError`.

    >>> normalize_axis(-1, 3)
    2
    """
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise AxisError(f"{what} must be an int, got {type(axis).__name__} {axis!r}.")
    if not -ndim <= axis < ndim:
        valid = f"[{-ndim}, {ndim - 1}]" if ndim else "none (the tensor is 0-d)"
        raise AxisError(
            f"{what} {axis} is out of range for {_tensor_label(name)} with {ndim} "
            f"dimension(s); valid axes: {valid}."
        )
    return axis % ndim


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero-point for the whole tensor; qparams have shape ``()``.

    >>> PerTensor().qparam_shape((4, 6))
    ()
    """

    kind: Literal["per_tensor"] = "per_tensor"

    def normalize(self, ndim: int, *, name: str | None = None) -> PerTensor:
        """This granularity with its axis (none here) made non-negative."""
        return self

    def qparam_shape(
        self, shape: tuple[int, ...], *, nondivisible: NonDivisiblePolicy = "raise", name: str | None = None
    ) -> tuple[int, ...]:
        """The shape of scale and zero-point for an input of ``shape``."""
        return ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form; :func:`granularity_from_dict` reads it back."""
        return {"kind": self.kind}

    def __str__(self) -> str:
        return "per-tensor"


@dataclass(frozen=True)
class PerChannel:
    """One scale and zero-point per index along ``axis``; qparams have shape ``(C,)``.

    The reduction runs over every other dimension, so ``PerChannel(0)`` on a
    Linear weight ``(out, in)`` gives one scale per output channel.

    >>> PerChannel(-1).qparam_shape((4, 6))
    (6,)
    """

    axis: int = 0
    kind: Literal["per_channel"] = "per_channel"

    def normalize(self, ndim: int, *, name: str | None = None) -> PerChannel:
        """This granularity with a non-negative axis, checked against ``ndim``.

        >>> PerChannel(-1).normalize(2)
        PerChannel(axis=1, kind='per_channel')
        """
        return PerChannel(normalize_axis(self.axis, ndim, name=name))

    def qparam_shape(
        self, shape: tuple[int, ...], *, nondivisible: NonDivisiblePolicy = "raise", name: str | None = None
    ) -> tuple[int, ...]:
        """The shape of scale and zero-point for an input of ``shape``."""
        axis = normalize_axis(self.axis, len(shape), name=name)
        return (shape[axis],)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form; :func:`granularity_from_dict` reads it back."""
        return {"kind": self.kind, "axis": self.axis}

    def __str__(self) -> str:
        return f"per-channel(axis={self.axis})"


@dataclass(frozen=True)
class PerGroup:
    """One scale and zero-point per ``group_size`` consecutive elements along ``axis``.

    Qparams have the input's shape with ``axis`` replaced by the group count.
    When ``group_size`` does not divide the axis, the ``nondivisible`` policy of the
    scheme decides: ``raise`` (default) or ``pad`` (the last group is partial and
    the group count is rounded up).

    >>> PerGroup(axis=-1, group_size=128).qparam_shape((64, 512))
    (64, 4)
    """

    axis: int = -1
    group_size: int = 128
    kind: Literal["per_group"] = "per_group"

    def __post_init__(self) -> None:
        gs = self.group_size
        if isinstance(gs, bool) or not isinstance(gs, int) or gs < 1:
            raise GroupSizeError(f"group_size must be a positive int, got {gs!r}.")

    def normalize(self, ndim: int, *, name: str | None = None) -> PerGroup:
        """This granularity with a non-negative axis, checked against ``ndim``.

        >>> PerGroup(-1, 32).normalize(3).axis
        2
        """
        return PerGroup(normalize_axis(self.axis, ndim, name=name), self.group_size)

    def group_count(
        self, size: int, *, nondivisible: NonDivisiblePolicy = "raise", name: str | None = None
    ) -> int:
        """Number of groups along an axis of ``size`` elements under ``nondivisible``.

        >>> PerGroup(0, 4).group_count(10, nondivisible="pad")
        3
        """
        if size % self.group_size == 0:
            return size // self.group_size
        if nondivisible == "pad":
            return math.ceil(size / self.group_size)
        raise GroupSizeError(
            f"group_size must divide dimension {self.axis} of {_tensor_label(name)} "
            f"(size {size}); got {self.group_size}. Pick a divisor of {size} or "
            f"use the scheme's nondivisible='pad' policy (the last group is then partial)."
        )

    def qparam_shape(
        self, shape: tuple[int, ...], *, nondivisible: NonDivisiblePolicy = "raise", name: str | None = None
    ) -> tuple[int, ...]:
        """The shape of scale and zero-point for an input of ``shape``."""
        axis = normalize_axis(self.axis, len(shape), name=name)
        g = PerGroup(axis, self.group_size).group_count(shape[axis], nondivisible=nondivisible, name=name)
        return shape[:axis] + (g,) + shape[axis + 1 :]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form; :func:`granularity_from_dict` reads it back."""
        return {"kind": self.kind, "axis": self.axis, "group_size": self.group_size}

    def __str__(self) -> str:
        return f"per-group(axis={self.axis}, group_size={self.group_size})"


Granularity = PerTensor | PerChannel | PerGroup


def granularity_from_dict(data: dict[str, object]) -> Granularity:
    """Rebuild a granularity from its ``to_dict()`` form.

    >>> granularity_from_dict(PerGroup(1, 64).to_dict())
    PerGroup(axis=1, group_size=64, kind='per_group')
    """
    kind = data.get("kind")
    try:
        if kind == "per_tensor":
            return PerTensor()
        if kind == "per_channel":
            return PerChannel(int(data["axis"]))  # type: ignore[call-overload]
        if kind == "per_group":
            return PerGroup(int(data["axis"]), int(data["group_size"]))  # type: ignore[call-overload]
    except KeyError as exc:
        raise MonoQuantError(f"granularity {data!r} is missing the field {exc.args[0]!r}.") from None
    raise MonoQuantError(
        f"unknown granularity kind {kind!r} in {data!r}; expected per_tensor, per_channel or per_group."
    )
