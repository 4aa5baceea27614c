"""The structural export of each backbone's whole model (``ModelConfig.backbone`` -> how its IR graph is built).

A backbone's export walks the model's own attributes node by node (node names are the torch module paths) and
refuses a model whose forward it would not reproduce: a subclass that overrides one of ``methods``, or a module it
does not know (``problems``). ``dead`` names the parameter-holding modules upstream keeps but never reads (dropped
with a note).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import SPIKFORMER_VARIANTS
from ..nn.sdt import SpikeDrivenTransformer
from .builder import Builder, same_behaviour
from .spikformer import METHODS as SPIKFORMER_METHODS, Spikformer, spikformer, spikformer_problems
from .zoo import DEAD, ZOO_METHODS, transformer, zoo_problems


@dataclass(frozen=True)
class BackboneExport:
    model_class: type[nn.Module]
    methods: tuple[str, ...]                           # a subclass overriding one is a custom model
    build: Callable[[Builder, nn.Module, bool], str]   # (builder, model, events) -> the Output node
    problems: Callable[[str, nn.Module], list[str]]    # (path, model) -> what the export would not reproduce
    dead: tuple[str, ...] = ()                         # module names whose parameters forward never reads


EXPORTS: dict[str, BackboneExport] = {
    "sdt": BackboneExport(SpikeDrivenTransformer, ZOO_METHODS[SpikeDrivenTransformer], transformer, zoo_problems,
                          DEAD),
}
EXPORTS.update({variant: BackboneExport(Spikformer, SPIKFORMER_METHODS[Spikformer], spikformer, spikformer_problems)
                for variant in SPIKFORMER_VARIANTS})


def backbone_export(model: nn.Module) -> BackboneExport | None:
    """The export of ``model`` when it is a backbone's whole model (not a custom subclass), else None."""
    return next((e for e in EXPORTS.values() if same_behaviour(model, e.model_class, e.methods)), None)
