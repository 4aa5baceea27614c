"""Export a PyTorch spiking model to the graph IR, structurally (module by module, no tracing).

Two kinds of model export:

- the zoo model :class:`~snncompile.nn.sdt.SpikeDrivenTransformer`, every attention mode, static or
  DVS mode, lif or plif, TET or not, any ``mlp_ratio`` and ``pooling_stat`` (shape and T from its config);
- user models: ``nn.Sequential`` chains (nested, and :class:`~snncompile.nn.seq.PerStep`) of
  ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.BatchNorm1d``, ``nn.Linear``, ``nn.MaxPool2d``, ``nn.Flatten``,
  ``nn.ReLU``, ``nn.Identity``, ``nn.Dropout`` (eval mode), our neurons and the zoo blocks (``Block``,
  ``SpikingSelfAttention``, ``MLP``, ``SpikingPatchSplitting``). They follow SpikingJelly's multi-step
  convention: the model is called on a time-major ``[T, B, *input_shape]`` stream, stateless layers act
  on every timestep (as in ``PerStep``), neurons and zoo blocks on the whole stream.

Anything else raises :class:`ExportError`, listing every unsupported module by path and class.
The returned graph is valid and, run by :func:`snncompile.ir.run_graph`, reproduces the model bit for
bit (logits and every neuron's spikes). See ``docs/ir.md`` for the conventions.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..ir import Graph
from ..ir.ops import Input, Output, Repeat
from ..nn.seq import PerStep
from .builder import (LEAVES, NEURONS, Builder, ExportError, class_name, is_neuron, join, leaf_converter,
                      leaf_problems, neuron, same_behaviour, where)
from .backbones import EXPORTS, BackboneExport, backbone_export
from .zoo import CONVERTERS, DEAD, dead_parameters, zoo_converter, zoo_problems

SUPPORTED = ", ".join(["torch.nn.Sequential", class_name(PerStep)] + [class_name(c) for c, _, _ in LEAVES]
                      + [class_name(c) for c in NEURONS] + [class_name(c) for c in CONVERTERS]
                      + [f"{class_name(e.model_class)} (as the whole model)" for e in EXPORTS.values()])


def export(model: nn.Module, *, input_shape: Sequence[int] | None = None, time_steps: int | None = None,
           events: bool | None = None) -> Graph:
    """The IR graph of ``model``; node names are the torch module paths (see ``docs/ir.md``).

    ``events`` chooses the input node. ``False``: a static image, ``Input(time="static")`` fed
    ``[B, *input_shape]``, followed by ``Repeat(T)`` (the zoo model's ``[B, C, H, W]`` input). ``True``:
    a stream, ``Input(time="stream")`` fed ``[T, B, *input_shape]`` (the zoo model's ``[B, T, C, H, W]``
    event input, transposed to time-major). Default: the zoo model's ``cfg.dvs_mode``; ``True`` for
    user models, whose torch input is the time-major stream itself.

    For the zoo model ``input_shape`` and ``time_steps`` come from its config (if given they must
    agree); user models need both. Parameters the forward never reads (``talking_heads``) are dropped
    and listed in the graph's history entry ``export`` (``options["dropped"]``).
    """
    if (whole := backbone_export(model)) is not None:
        return _export_backbone(whole, model, input_shape, time_steps, events)
    problems = _problems("", model, per_step=False)
    if input_shape is None or time_steps is None:
        problems.append(f"cannot export {where('', model)}: a user model needs input_shape (per sample and "
                        f"timestep, e.g. (C, H, W)) and time_steps")
    elif time_steps < 1 or any(int(s) < 1 for s in input_shape):
        problems.append(f"cannot export {where('', model)}: input_shape {tuple(input_shape)} and time_steps "
                        f"{time_steps} must be positive")
    if problems:
        raise ExportError(problems, SUPPORTED if any("not a supported layer" in p for p in problems) else None)
    events = True if events is None else events
    b = Builder()
    shape = tuple(int(s) for s in input_shape)
    if events:
        x = b.add("input", Input(shape=shape, time="stream"))
    else:
        x = b.add("input.repeat", Repeat(time_steps=time_steps), b.add("input", Input(shape=shape, time="static")))
    out = b.add("output", Output(), _chain(b, "", model, x))
    return b.graph((out,), time_steps, _history(model, b, events, DEAD))  # zoo submodules keep their dead weights


def _export_backbone(whole: BackboneExport, model: nn.Module, input_shape, time_steps, events) -> Graph:
    cfg = model.cfg
    problems = whole.problems("", model)
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if input_shape is not None and tuple(input_shape) != shape:
        problems.append(f"cannot export {where('', model)}: input_shape {tuple(input_shape)} differs from the "
                        f"config's {shape}")
    if time_steps is not None and time_steps != cfg.time_steps:
        problems.append(f"cannot export {where('', model)}: time_steps={time_steps} differs from the config's "
                        f"{cfg.time_steps}")
    if problems:
        raise ExportError(problems)
    events = cfg.dvs_mode if events is None else events
    b = Builder()
    out = whole.build(b, model, events)
    return b.graph((out,), cfg.time_steps, _history(model, b, events, whole.dead))


def _history(model: nn.Module, b: Builder, events: bool, dead: tuple[str, ...]) -> dict:
    dropped = dead_parameters(model, b, dead)
    return {"source": class_name(model), "input": "stream" if events else "static",
            "dropped": tuple(dropped),
            "dropped_reason": f"never read by the forward (upstream dead parameters: {', '.join(dead)})"
            if dropped else ""}


def _is_container(m: nn.Module) -> bool:
    return same_behaviour(m, nn.Sequential, ("forward",)) or same_behaviour(m, PerStep, ("forward",))


def _children(m: nn.Module) -> list[tuple[str, nn.Module]]:
    """What ``Sequential.forward`` runs, in order; unlike ``named_children`` it keeps a module that
    appears twice (it runs twice)."""
    return list(m._modules.items())


def _problems(path: str, m: nn.Module, per_step: bool) -> list[str]:
    """Every module of a user model the export cannot reproduce, each naming its path and class."""
    if _is_container(m):
        inner = per_step or isinstance(m, PerStep)
        return [p for name, child in _children(m) for p in _problems(join(path, name), child, inner)]
    if leaf_converter(m) is not None:
        return leaf_problems(path, m)
    if is_neuron(m) or zoo_converter(m) is not None:
        if per_step:
            return [f"cannot export {where(path, m)}: inside PerStep it would see [T*B, ...] frames, not a "
                    "time series; place it directly in an nn.Sequential"]
        return leaf_problems(path, m) if is_neuron(m) else zoo_problems(path, m)
    return [f"cannot export {where(path, m)}: not a supported layer"]


def _chain(b: Builder, path: str, m: nn.Module, x: str) -> str:
    if _is_container(m):
        for name, child in _children(m):
            x = _chain(b, join(path, name), child, x)
        return x
    zoo = zoo_converter(m)
    if zoo is not None:
        return zoo(b, path, m, x)
    convert = neuron if is_neuron(m) else leaf_converter(m)
    return convert(b, path or "model", m, x)  # a root that is a single layer is named "model"
