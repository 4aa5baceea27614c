"""The torch model of each backbone (``ModelConfig.backbone``): every model is built from its config here.

A backbone's model class derives from :class:`~.model_base.BackboneModel` (the checked config as ``cfg``, the
time-stepped input convention, ``predict_logits``: logits averaged over time whatever the config's TET setting,
what evaluation reads) and has ``forward`` (logits).
"""
from __future__ import annotations

from torch import nn

from ..config import SPIKFORMER_VARIANTS, ModelConfig
from .qkformer import VARIANTS as QKFORMER_VARIANTS, QKFormer
from .sdt import SpikeDrivenTransformer
from .sdt_v2 import MetaSpikeFormer
from .sdt_v3 import EfficientSpikingTransformer
from .spikformer import Spikformer

MODELS: dict[str, type[nn.Module]] = {"sdt": SpikeDrivenTransformer, "sdt-v2": MetaSpikeFormer,
                                      "sdt-v3": EfficientSpikingTransformer}
MODELS.update(dict.fromkeys(QKFORMER_VARIANTS, QKFormer))
MODELS.update(dict.fromkeys(SPIKFORMER_VARIANTS, Spikformer))


def build_model(cfg: ModelConfig) -> nn.Module:
    """A fresh model of ``cfg``'s backbone (its weights initialised as upstream does)."""
    return MODELS[cfg.backbone](cfg)
