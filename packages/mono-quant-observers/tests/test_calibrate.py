"""calibrate(): streaming, deterministic, resumable activation qparams on a small torch model."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from mono_quant.core import NonFiniteError, PerChannel, get_observer, get_scheme
from mono_quant.observers import (
    CalibrationError,
    CalibrationPlan,
    CalibrationResult,
    CalibrationState,
    calibrate,
)

OBSERVERS = ["minmax", "moving-average-minmax", "percentile", "histogram", "mse"]


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.norm(x))))


class Tiny(nn.Module):
    """Embedding, two residual MLP blocks, a head: 5 Linear modules; called like a HF model."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(40, 8)
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Linear(8, 3)
        self.dropout = nn.Dropout(0.5)
        self.seen_modes: list[tuple[bool, bool]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.seen_modes.append((torch.is_inference_mode_enabled(), self.training))
        x = self.dropout(self.embed(input_ids))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def batches(n: int = 7) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {
            "input_ids": torch.randint(0, 40, (2, 3 + i % 3), generator=g),
            "attention_mask": torch.ones(2, 3 + i % 3),
        }
        for i in range(n)
    ]


LINEARS = ["blocks.0.up", "blocks.0.down", "blocks.1.up", "blocks.1.down", "head"]


def same(a: CalibrationResult, b: CalibrationResult) -> bool:
    ta, tb = a.tensors(), b.tensors()
    return (
        ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta) and a.metadata() == b.metadata()
    )


def test_qparams_equal_observers_fed_by_hand_with_the_same_activations() -> None:
    model, plan = Tiny(), CalibrationPlan(observer="histogram", outputs=True)
    result = calibrate(model, batches(), plan, progress=False)
    assert sorted(result.inputs) == sorted(LINEARS) == sorted(result.outputs)
    # The same activations, captured by hand and fed to fresh observers.
    captured: dict[str, list[torch.Tensor]] = {}
    handles = [
        dict(model.named_modules())[m].register_forward_hook(
            lambda mod, args, out, m=m: captured.setdefault(m, []).append(args[0].clone())
        )
        for m in LINEARS
    ]
    with torch.no_grad():
        model.eval()
        for b in batches():
            model(**b)
    for h in handles:
        h.remove()
    scheme = get_scheme("asymmetric")
    for m in LINEARS:
        obs = get_observer("histogram")
        for x in captured[m]:
            obs.observe(x)
        assert obs.qparams(scheme, "uint8").equals(result.inputs[m]), m


@pytest.mark.parametrize("observer", OBSERVERS)
def test_two_runs_give_identical_qparams(observer: str) -> None:
    plan = CalibrationPlan(observer=observer, scheme="symmetric", dtype="int8")
    assert same(
        calibrate(Tiny(), batches(), plan, progress=False), calibrate(Tiny(), batches(), plan, progress=False)
    )


class Crash(RuntimeError):
    pass


def crashing(data: list[Any], at: int) -> Any:
    for i, b in enumerate(data):
        if i == at:
            raise Crash(f"killed at batch {at}")
        yield b


@pytest.mark.parametrize("observer", OBSERVERS)
def test_resuming_from_a_checkpoint_equals_one_uninterrupted_run(observer: str) -> None:
    plan = CalibrationPlan(observer=observer, scheme="symmetric", dtype="int8")
    whole = calibrate(Tiny(), batches(), plan, progress=False)
    saved: list[bytes] = []

    def checkpoint(state: CalibrationState) -> None:
        buffer = io.BytesIO()
        torch.save(state.to_dict(), buffer)  # as a real job would, to disk
        saved.append(buffer.getvalue())

    with pytest.raises(Crash):
        calibrate(
            Tiny(), crashing(batches(), at=5), plan, progress=False, checkpoint=checkpoint, checkpoint_every=2
        )
    state = CalibrationState.from_dict(torch.load(io.BytesIO(saved[-1]), weights_only=True))
    assert state.batches == 4
    resumed = calibrate(Tiny(), batches(), plan, state=state, progress=False)
    assert resumed.batches == 7 and same(resumed, whole)


@pytest.mark.parametrize("observer", ["minmax", "moving-average-minmax", "percentile", "mse"])
def test_shards_merged_equal_one_run(observer: str) -> None:
    plan = CalibrationPlan(observer=observer, granularity=PerChannel(-1), scheme="symmetric", dtype="int8")
    data = batches()
    first = calibrate(Tiny(), data[:3], plan, progress=False).state
    second = calibrate(Tiny(), data[3:], plan, progress=False).state
    assert same(first.merge(second).result(), calibrate(Tiny(), data, plan, progress=False))


def test_the_state_does_not_grow_with_the_batches_it_has_seen() -> None:
    plan = CalibrationPlan()

    def size(result: CalibrationResult) -> int:
        return sum(
            t.numel()
            for s in result.state.observers.values()
            for t in s["state"].values()
            if isinstance(t, torch.Tensor)
        )

    assert size(calibrate(Tiny(), batches(2), plan, progress=False)) == size(
        calibrate(Tiny(), batches(40), plan, progress=False)
    )


def test_batches_run_in_eval_and_inference_mode_and_hooks_and_modes_are_restored() -> None:
    model = Tiny().train()
    calibrate(model, batches(2), CalibrationPlan(), progress=False)
    assert model.seen_modes == [(True, False), (True, False)]
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(Crash):
        calibrate(model, crashing(batches(), at=1), CalibrationPlan(), progress=False)
    assert model.training and not any(m._forward_hooks for m in model.modules())


def test_a_non_finite_activation_names_the_module_and_the_batch() -> None:
    model = Tiny()
    with torch.no_grad():
        model.embed.weight[7] = float("nan")
    data = batches(3)
    data[2]["input_ids"][0, 0] = 7
    with pytest.raises(NonFiniteError, match=r"'blocks\.0\.up:input in batch 2' holds \d+ non-finite"):
        calibrate(model, data, CalibrationPlan(), progress=False)


def test_a_non_finite_batch_is_skipped_and_counted_under_the_skip_policy() -> None:
    model = Tiny()
    with torch.no_grad():
        model.embed.weight[7] = float("inf")
    data = batches(3)
    data[1]["input_ids"][0, 0] = 7
    result = calibrate(model, data, CalibrationPlan(nonfinite="skip", observer="percentile"), progress=False)
    assert result.state.observers["blocks.0.up:input"]["skipped"] == 1
    assert result.state.observers["blocks.0.up:input"]["batches"] == 2


def test_selection_by_type_and_pattern() -> None:
    model = Tiny()
    assert CalibrationPlan(exclude=("head",)).select(model) == LINEARS[:-1]
    assert CalibrationPlan(include=("blocks.1.*",)).select(model) == ["blocks.1.up", "blocks.1.down"]
    assert CalibrationPlan(module_types=("LayerNorm",)).select(model) == ["blocks.0.norm", "blocks.1.norm"]
    with pytest.raises(
        CalibrationError, match=r"no module of the model matches .* types: Block, Dropout, Embedding"
    ):
        CalibrationPlan(module_types=("Conv2d",)).select(model)


def test_an_integer_input_is_refused_naming_the_module() -> None:
    with pytest.raises(
        CalibrationError, match=r"the input of module 'embed' in batch 0 is Tensor of dtype torch.int64"
    ):
        calibrate(Tiny(), batches(1), CalibrationPlan(module_types=("Embedding",)), progress=False)


def test_a_module_that_never_runs_is_reported_not_silently_dropped() -> None:
    model = Tiny()
    model.unused = nn.Linear(8, 8)
    with pytest.warns(UserWarning, match=r"1 selected activation\(s\) never ran.*unused:input"):
        result = calibrate(model, batches(2), CalibrationPlan(), progress=False)
    assert result.not_called == ("unused:input",) and "unused" not in result.inputs


def test_a_plan_that_cannot_work_fails_before_any_batch_runs() -> None:
    model = Tiny()
    for plan, message in (
        (CalibrationPlan(observer="histogram", granularity=PerChannel(-1)), "does not keep per-channel"),
        (CalibrationPlan(observer="mse", options={"bogus": 1}), "does not take option"),
        (CalibrationPlan(scheme="no-such-scheme"), "not an installed scheme"),
    ):
        with pytest.raises(Exception, match=message):
            calibrate(model, batches(), plan, progress=False)
        assert model.seen_modes == []


def test_resuming_with_another_plan_is_refused_naming_the_difference() -> None:
    state = calibrate(Tiny(), batches(2), CalibrationPlan(), progress=False).state
    with pytest.raises(CalibrationError, match=r"dtype: 'int8' vs 'uint8'"):
        calibrate(Tiny(), batches(), CalibrationPlan(dtype="int8"), state=state, progress=False)


def test_tensor_and_tuple_batches_and_a_custom_forward() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    data = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    a = calibrate(model, data, progress=False)
    b = calibrate(model, [(x,) for x in data], progress=False)
    c = calibrate(model, [{"x": x} for x in data], forward=lambda m, batch: m(batch["x"]), progress=False)
    assert same(a, b) and same(a, c)


def test_progress_reports_batches_done() -> None:
    seen: list[tuple[int, int | None]] = []
    calibrate(
        Tiny(),
        batches(3),
        CalibrationPlan(),
        progress=lambda done, total: seen.append((done, total)),
        total=3,
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_activation_qparams_round_trip_through_safetensors(tmp_path: Any) -> None:
    st = pytest.importorskip("safetensors.torch")
    result = calibrate(
        Tiny(), batches(), CalibrationPlan(outputs=True, granularity=PerChannel(-1)), progress=False
    )
    path = tmp_path / "activations.safetensors"
    st.save_file(result.tensors(), str(path), metadata=result.metadata())
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        back = CalibrationResult.read_qparams({k: f.get_tensor(k) for k in f.keys()}, f.metadata())  # noqa: SIM118
    assert "blocks.0.up.input_scale" in result.tensors()
    assert set(back) == {f"{m}:{r}" for m in LINEARS for r in ("input", "output")}
    for m in LINEARS:
        assert back[f"{m}:input"].equals(result.inputs[m]) and back[f"{m}:output"].equals(result.outputs[m])


def test_the_plan_round_trips_and_refuses_what_it_does_not_know() -> None:
    plan = CalibrationPlan(
        observer="percentile", options={"upper": 99.9}, granularity=PerChannel(-1), outputs=True
    )
    assert CalibrationPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(CalibrationError, match="unknown field"):
        CalibrationPlan.from_dict({**plan.to_dict(), "colour": "red"})
    with pytest.raises(CalibrationError, match="observes nothing"):
        CalibrationPlan(inputs=False)


def test_padding_mask_leaves_padded_positions_out() -> None:
    # The first Linear's input is LayerNorm(embedding): per token, so a padded batch
    # with the padding left out observes what two one-sentence batches do.
    # (Later layers' matmuls may round differently with another batch shape.)
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    padded = [{"input_ids": ids, "attention_mask": mask}]
    separate = [{"input_ids": ids[:1]}, {"input_ids": ids[1:, :2]}]
    plan = CalibrationPlan(include=("blocks.0.up",))
    masked = calibrate(
        Tiny(), padded, CalibrationPlan(include=("blocks.0.up",), padding_mask="attention_mask")
    )
    alone = calibrate(Tiny(), separate, plan, progress=False).inputs["blocks.0.up"]
    assert masked.inputs["blocks.0.up"].equals(alone)
    unmasked = calibrate(Tiny(), padded, plan, progress=False).inputs["blocks.0.up"]
    assert not unmasked.equals(alone), "token 0's activations must have widened the range"


def test_padding_mask_needs_mapping_batches_and_an_axis_from_the_end() -> None:
    with pytest.raises(CalibrationError, match=r"batch 0 has no 2-D tensor under that key \(got NoneType\)"):
        calibrate(
            Tiny(), [{"input_ids": torch.ones(2, 3, dtype=torch.long)}], CalibrationPlan(padding_mask="mask")
        )
    with pytest.raises(CalibrationError, match=r"per-channel\(axis=2\) must count its axis from the end"):
        CalibrationPlan(padding_mask="attention_mask", granularity=PerChannel(2))
