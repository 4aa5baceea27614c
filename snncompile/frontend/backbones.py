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
from ..nn.qkformer import VARIANTS as QKFORMER_VARIANTS, QKFormer
from ..nn.sdt import SpikeDrivenTransformer
from ..nn.sdt_v2 import MetaSpikeFormer
from ..nn.sdt_v3 import EfficientSpikingTransformer
from .builder import Builder, same_behaviour
from .qkformer import QKFORMER_METHODS, qkformer_graph, qkformer_problems
from .sdt_v2 import V2_METHODS, meta_spikeformer, v2_problems
from .sdt_v3 import V3_METHODS, efficient_transformer, v3_problems
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
    "sdt-v2": BackboneExport(MetaSpikeFormer, V2_METHODS[MetaSpikeFormer], meta_spikeformer, v2_problems),
    "sdt-v3": BackboneExport(EfficientSpikingTransformer, V3_METHODS[EfficientSpikingTransformer],
                             efficient_transformer, v3_problems),
}
EXPORTS.update(dict.fromkeys(QKFORMER_VARIANTS, BackboneExport(
    QKFormer, QKFORMER_METHODS[QKFormer], qkformer_graph, qkformer_problems)))
EXPORTS.update({variant: BackboneExport(Spikformer, SPIKFORMER_METHODS[Spikformer], spikformer, spikformer_problems)
                for variant in SPIKFORMER_VARIANTS})


def backbone_export(model: nn.Module) -> BackboneExport | None:
    """The export of ``model`` when it is a backbone's whole model (not a custom subclass), else None."""
    return next((e for e in EXPORTS.values() if same_behaviour(model, e.model_class, e.methods)), None)
