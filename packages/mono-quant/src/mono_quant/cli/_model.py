"""What a Hugging Face model config says about its weights: which are ``Linear`` layers a runtime quantizes.

Runtimes that load quantized checkpoints (transformers with compressed-tensors,
vLLM) quantize the weights of ``Linear`` modules and keep embeddings, norms and
``lm_head`` in full precision; llm-compressor's configs say exactly that
(``targets: ["Linear"]``, ``ignore: ["lm_head"]``). mono-quant selects the same
weights for a model folder. It learns them from the model's own structure when
transformers is installed (the model is built from its config on the ``meta``
device: no memory, no weights), and otherwise from a name rule that gives the
same answer on BERT, Llama, Qwen2/3, Mistral, Gemma and GPT-2 (a test checks
the two agree):

- a ``Linear`` weight is a 2-D floating ``<module>.weight``;
- except embedding tables: a module whose last name part contains ``embed``
  (``embed_tokens``, ``word_embeddings``, ``position_embeddings``,
  ``token_type_embeddings``, ``embed_positions``) or is ``wte``, ``wpe`` or
  ``shared``;
- except GPT-2's ``Conv1D`` layers (``c_attn``, ``c_proj``, ``c_fc`` when
  ``model_type`` is ``gpt2``), which store their weight transposed and are not
  ``Linear`` to a runtime.

``lm_head`` is a ``Linear`` that runtimes keep unquantized: it is listed as
ignored, not selected.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mono_quant.cli._errors import InputError

__all__ = ["IGNORED_LINEAR", "ModelLayout", "linear_modules_by_rule", "model_layout", "read_config"]

#: Linear modules runtimes keep in full precision (llm-compressor's default ``ignore``).
IGNORED_LINEAR = ("lm_head",)
_EMBEDDING_PARTS = ("wte", "wpe", "shared")
_CONV1D = {"gpt2": ("c_attn", "c_proj", "c_fc")}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: ``(name, dtype, shape)`` of one checkpoint tensor, from its header.
TensorHeader = tuple[str, torch.dtype, Sequence[int]]


@dataclass(frozen=True)
class ModelLayout:
    """A checkpoint's ``Linear`` modules, which of them runtimes ignore, and how that was learned."""

    linear: tuple[str, ...]
    ignored: tuple[str, ...]
    method: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def selected_weights(self) -> frozenset[str]:
        """``<module>.weight`` of every ``Linear`` that is not ignored."""
        return frozenset(f"{m}.weight" for m in self.linear if m not in self.ignored)


def read_config(path: Path) -> dict[str, Any]:
    """A model's ``config.json`` as a dict, or :class:`InputError` saying what is wrong with it."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable model config (JSON): {exc}.") from exc
    if not isinstance(config, dict):
        raise InputError(f"{path} is not a model config: it holds a {type(config).__name__}, not an object.")
    return config


def linear_modules_by_rule(
    config: dict[str, Any], tensors: Iterable[tuple[str, torch.dtype, Sequence[int]]]
) -> list[str]:
    """The ``Linear`` modules among ``(name, dtype, shape)`` by the documented name rule.

    >>> linear_modules_by_rule({"model_type": "llama"}, [
    ...     ("model.embed_tokens.weight", torch.bfloat16, (256, 64)),
    ...     ("model.layers.0.self_attn.q_proj.weight", torch.bfloat16, (64, 64)),
    ...     ("model.norm.weight", torch.bfloat16, (64,)),
    ...     ("lm_head.weight", torch.bfloat16, (256, 64)),
    ... ])
    ['model.layers.0.self_attn.q_proj', 'lm_head']
    """
    conv1d = _CONV1D.get(str(config.get("model_type", "")), ())
    out = []
    for name, dtype, shape in tensors:
        if not name.endswith(".weight") or len(shape) != 2 or dtype not in _FLOATS:
            continue
        module = name.removesuffix(".weight")
        last = module.rsplit(".", 1)[-1]
        if "embed" in last or last in _EMBEDDING_PARTS or last in conv1d:
            continue
        out.append(module)
    return out


def _linear_modules_by_structure(config: dict[str, Any]) -> list[str] | None:
    """The ``Linear`` modules of the model transformers builds from ``config``, or ``None`` if it cannot."""
    try:
        import transformers
    except ImportError:
        return None
    architectures = config.get("architectures") or []
    cls = getattr(transformers, str(architectures[0]), None) if architectures else None
    if cls is None:
        return None
    sink = io.StringIO()
    try:
        # Building on the meta device allocates nothing; transformers' chatter is not ours to print.
        with warnings.catch_warnings(), contextlib.redirect_stderr(sink), _quiet_transformers():
            warnings.simplefilter("ignore")
            model_config = transformers.AutoConfig.for_model(**config)
            with torch.device("meta"):
                model = cls._from_config(model_config)
    except Exception:  # noqa: BLE001 - any failure means "use the name rule", said in the report
        return None
    return [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]


@contextlib.contextmanager
def _quiet_transformers() -> Any:
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_layout(
    config: dict[str, Any],
    tensors: Sequence[tuple[str, torch.dtype, Sequence[int]]],
    *,
    use_transformers: bool = True,
) -> ModelLayout:
    """Which checkpoint tensors are weights of ``Linear`` modules, and which of those runtimes ignore.

    Learned from transformers' model built from ``config`` when possible (and its
    ``Linear`` weights are in the checkpoint), else by :func:`linear_modules_by_rule`.

    >>> layout = model_layout({"model_type": "llama"}, [
    ...     ("model.layers.0.mlp.up_proj.weight", torch.float32, (8, 4)),
    ...     ("lm_head.weight", torch.float32, (16, 4)),
    ... ], use_transformers=False)
    >>> layout.linear, layout.ignored, layout.method
    (('model.layers.0.mlp.up_proj', 'lm_head'), ('lm_head',), 'name rule')
    """
    present = {name for name, _, shape in tensors if len(shape) == 2}
    structure = _linear_modules_by_structure(config) if use_transformers else None
    notes: list[str] = []
    if structure is not None:
        found = [m for m in structure if f"{m}.weight" in present]
        if found:
            linear, method = found, f"model structure ({config.get('architectures', ['?'])[0]}, transformers)"
        else:
            notes.append(
                "the model transformers builds from config.json has none of this checkpoint's weight names; "
                "the name rule chose the Linear weights instead"
            )
            structure = None
    if structure is None:
        linear, method = linear_modules_by_rule(config, tensors), "name rule"
    ignored = tuple(m for m in linear if m.rsplit(".", 1)[-1] in IGNORED_LINEAR)
    return ModelLayout(tuple(linear), ignored, method, tuple(notes))
