"""calibrate(): observers on module activations over calibration batches, streaming and resumable."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mono_quant.core import Observer, QParams
from mono_quant.observers._plan import CalibrationError, CalibrationPlan

__all__ = ["STATE_FORMAT_VERSION", "CalibrationResult", "CalibrationState", "calibrate"]

STATE_FORMAT_VERSION = 1
#: safetensors metadata key of :meth:`CalibrationResult.metadata`.
METADATA_KEY = "mono_quant.activations"

Progress = Callable[[int, "int | None"], None]


def _key(module: str, role: str) -> str:
    return f"{module}:{role}"


@dataclass
class CalibrationState:
    """Everything needed to resume or merge a calibration: the plan, batches run, observer states.

    ``observers`` maps ``"<module>:input"`` / ``"<module>:output"`` to an observer's
    :meth:`~mono_quant.core.Observer.state_dict`. :meth:`to_dict` is loadable with
    ``torch.load(weights_only=True)``.
    """

    plan: CalibrationPlan
    batches: int = 0
    observers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values and CPU tensors: ``torch.save`` it to resume in another process."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            "plan": self.plan.to_dict(),
            "batches": self.batches,
            "observers": dict(self.observers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationState:
        """Rebuild a state from :meth:`to_dict`."""
        version = data.get("format_version")
        if not isinstance(version, int) or version > STATE_FORMAT_VERSION:
            raise CalibrationError(
                f"calibration state format version {version!r} is not one this mono-quant-observers "
                f"reads (up to {STATE_FORMAT_VERSION}); upgrade mono-quant-observers."
            )
        return cls(CalibrationPlan.from_dict(data["plan"]), int(data["batches"]), dict(data["observers"]))

    def build_observers(self) -> dict[str, Observer]:
        """A live observer per activation, loaded from this state."""
        out = {}
        for key, saved in self.observers.items():
            obs = self.plan.new_observer()
            obs.load_state_dict(saved)
            out[key] = obs
        return out

    def merge(self, other: CalibrationState) -> CalibrationState:
        """This calibration followed by ``other`` (a later shard of the batches), as one state.

        Exact for observers whose merge is exact: the result equals one run over
        this state's batches, then ``other``'s.
        """
        if other.plan != self.plan:
            raise CalibrationError(
                "cannot merge calibrations made with different plans: "
                + "; ".join(self.plan.diff(other.plan))
            )
        mine, theirs = self.build_observers(), other.build_observers()
        for key, obs in theirs.items():
            if key in mine:
                mine[key].merge(obs)
            else:
                mine[key] = obs
        order = list(self.observers) + [k for k in other.observers if k not in self.observers]
        return CalibrationState(
            self.plan, self.batches + other.batches, {k: mine[k].state_dict() for k in order}
        )

    def result(self, *, seconds: float = 0.0) -> CalibrationResult:
        """The activation qparams of every observed activation, computed by the plan's scheme."""
        scheme = self.plan.get_scheme()
        inputs: dict[str, QParams] = {}
        outputs: dict[str, QParams] = {}
        not_called: list[str] = []
        for key, obs in self.build_observers().items():
            module, role = key.rsplit(":", 1)
            if obs.batches == 0:
                not_called.append(key)
                continue
            qp = obs.qparams(scheme, self.plan.dtype, self.plan.granularity, name=key)
            (inputs if role == "input" else outputs)[module] = qp
        return CalibrationResult(self.plan, inputs, outputs, self, tuple(not_called), seconds)


@dataclass(frozen=True)
class CalibrationResult:
    """Activation qparams per module (``inputs``, ``outputs``), with the state that produced them.

    ``not_called`` lists the activations whose module never ran (no qparams).
    :meth:`tensors` and :meth:`metadata` are ready for
    ``safetensors.torch.save_file``; :meth:`from_tensors` reads them back.
    """

    plan: CalibrationPlan
    inputs: dict[str, QParams]
    outputs: dict[str, QParams]
    state: CalibrationState
    not_called: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def batches(self) -> int:
        """Batches the observers have seen, over every run merged into this result."""
        return self.state.batches

    def tensors(self) -> dict[str, torch.Tensor]:
        """``<module>.input_scale``, ``<module>.input_zero_point`` (and ``output_*``).

        The names compressed-tensors gives static activation qparams.
        """
        out: dict[str, torch.Tensor] = {}
        for role, table in (("input", self.inputs), ("output", self.outputs)):
            for module, qp in table.items():
                for what, t in qp.tensors().items():
                    out[f"{module}.{role}_{what}"] = t.contiguous()
        return out

    def metadata(self) -> dict[str, str]:
        """One ``str -> str`` entry: the plan and each activation's QParams metadata, as JSON."""
        entries = {
            _key(m, role): qp.metadata()
            for role, table in (("input", self.inputs), ("output", self.outputs))
            for m, qp in table.items()
        }
        doc = {"plan": self.plan.to_dict(), "batches": self.batches, "activations": entries}
        return {METADATA_KEY: json.dumps(doc, sort_keys=True)}

    @classmethod
    def read_qparams(
        cls, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
    ) -> dict[str, QParams]:
        """The QParams of every activation saved by :meth:`tensors` and :meth:`metadata`, by key.

        Keys are ``"<module>:input"`` / ``"<module>:output"``.
        """
        if METADATA_KEY not in metadata:
            raise CalibrationError(f"the metadata has no {METADATA_KEY!r} entry: not activation qparams.")
        doc = json.loads(metadata[METADATA_KEY])
        out = {}
        for key, meta in doc["activations"].items():
            module, role = key.rsplit(":", 1)
            found = {
                w: tensors[f"{module}.{role}_{w}"]
                for w in ("scale", "zero_point")
                if f"{module}.{role}_{w}" in tensors
            }
            out[key] = QParams.from_tensors(found, meta)
        return out


def _default_forward(model: torch.nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _first_tensor(value: Any) -> Any:
    if isinstance(value, (tuple, list)) and value:
        return value[0]
    return value


def _progress_bar(total: int | None) -> Progress | None:
    stream = sys.stderr
    if os.environ.get("CI") or os.environ.get("MONO_QUANT_NO_PROGRESS") or not stream.isatty():
        return None
    start = time.monotonic()

    def draw(done: int, _total: int | None) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        of = f"/{total}" if total else ""
        stream.write(f"\rcalibrate: {done}{of} batches  {rate:6.1f} batches/s ")
        stream.flush()

    return draw


def calibrate(
    model: torch.nn.Module,
    batches: Iterable[Any],
    plan: CalibrationPlan | None = None,
    *,
    state: CalibrationState | None = None,
    forward: Callable[[torch.nn.Module, Any], Any] | None = None,
    progress: bool | Progress | None = None,
    total: int | None = None,
    checkpoint: Callable[[CalibrationState], None] | None = None,
    checkpoint_every: int = 100,
) -> CalibrationResult:
    """Run ``model`` on ``batches`` with an observer on each selected activation; return their qparams.

    Forward hooks on the modules ``plan`` selects feed each module's first input
    (and/or its output) to a fresh observer; the batches run in ``eval()`` mode under
    ``torch.inference_mode()``, one at a time, and nothing of an activation is kept
    beyond the observer's state. A batch is passed as ``model(**batch)`` for a
    mapping, ``model(*batch)`` for a tuple or list, else ``model(batch)``
    (``forward(model, batch)`` overrides that), its tensors moved to the model's device.

    Resuming: pass a ``state`` (``result.state``, or what ``checkpoint`` received
    every ``checkpoint_every`` batches) with the *same* batches; its first
    ``state.batches`` are skipped without running the model, and the result
    equals one uninterrupted run. ``progress``: ``None`` draws a bar on a
    terminal, ``False`` none, or a callable ``(done, total)``.

    >>> from mono_quant.core import get_scheme
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> batches = [torch.randn(3, 4) for _ in range(5)]
    >>> result = calibrate(model, batches, CalibrationPlan(outputs=True), progress=False)
    >>> sorted(result.inputs), result.batches
    (['0', '2'], 5)
    >>> result.inputs["2"].zero_point.item()  # the input of layer 2 is a ReLU output: >= 0
    0
    """
    plan = plan or CalibrationPlan()
    plan.check()
    if state is not None and state.plan != plan:
        raise CalibrationError(
            "the state to resume was made with another plan: " + "; ".join(plan.diff(state.plan))
        )
    modules = plan.select(model)
    named = dict(model.named_modules())
    observers = state.build_observers() if state is not None else {}
    for module in modules:
        for role in plan.roles:
            observers.setdefault(_key(module, role), plan.new_observer())
    skip = state.batches if state is not None else 0
    run_forward = forward or _default_forward
    report = _progress_bar(total) if progress is None or progress is True else progress or None

    current: list[Any] = [skip, None]  # the batch running (for errors) and its padding mask

    def hook(name: str) -> Callable[..., None]:
        def observe(
            module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            index, mask = current
            if plan.inputs:
                x = args[0] if args else next(iter(kwargs.values()), None)
                _observe(observers[_key(name, "input")], x, name, "input", index, mask)
            if plan.outputs:
                y = _first_tensor(output)
                _observe(observers[_key(name, "output")], y, name, "output", index, mask)

        return observe

    handles = [named[m].register_forward_hook(hook(m), with_kwargs=True) for m in modules]
    training = {m: m.training for m in model.modules()}
    device = next((p.device for p in model.parameters()), None)
    done = skip
    start = time.perf_counter()
    try:
        model.eval()
        with torch.inference_mode():
            for index, batch in enumerate(batches):
                if index < skip:
                    continue
                batch = batch if device is None else _to_device(batch, device)
                current[:] = [index, _padding_mask(batch, plan.padding_mask, index)]
                run_forward(model, batch)
                done += 1
                if report is not None:
                    report(done, total)
                if checkpoint is not None and checkpoint_every > 0 and done % checkpoint_every == 0:
                    checkpoint(_snapshot(plan, done, observers))
    finally:
        for h in handles:
            h.remove()
        for m, was_training in training.items():
            m.train(was_training)
        if report is not None and progress is None and done > skip:
            sys.stderr.write("\n")
    seconds = time.perf_counter() - start
    result = _snapshot(plan, done, observers).result(seconds=seconds)
    if result.not_called:
        warnings.warn(
            f"calibrate: {len(result.not_called)} selected activation(s) never ran, so they have no "
            f"qparams: {', '.join(result.not_called[:5])}{' ...' if len(result.not_called) > 5 else ''}. "
            f"Exclude their modules from the plan, or check the batches reach them.",
            UserWarning,
            stacklevel=2,
        )
    return result


def _padding_mask(batch: Any, key: str | None, index: int) -> torch.Tensor | None:
    if key is None:
        return None
    mask = batch.get(key) if isinstance(batch, Mapping) else None
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise CalibrationError(
            f"the plan's padding_mask is {key!r}, but batch {index} has no 2-D tensor under that key "
            f"(got {type(mask).__name__}); pass mapping batches such as a tokenizer's output."
        )
    return mask != 0


def _observe(
    observer: Observer, x: Any, module: str, role: str, batch: int, mask: torch.Tensor | None
) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise CalibrationError(
            f"the {role} of module {module!r} in batch {batch} is {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else "")
            + "; calibrate observes floating tensors. Exclude the module from the plan."
        )
    x = x.detach()
    if mask is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(mask.shape):
        x = x[mask.to(x.device)]  # (tokens kept, ...): the padded positions left out
        if x.numel() == 0:
            return  # a batch of padding only: nothing to observe here
    observer.observe(x, name=f"{module}:{role} in batch {batch}")


def _snapshot(plan: CalibrationPlan, batches: int, observers: Mapping[str, Observer]) -> CalibrationState:
    return CalibrationState(plan, batches, {k: o.state_dict() for k, o in observers.items()})
