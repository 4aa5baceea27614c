"""The torch model of each backbone (``ModelConfig.backbone``): every model is built from its config here.

A backbone's model class takes the config as its only argument, keeps it as ``cfg``, and has ``forward`` (logits)
and ``predict_logits`` (logits averaged over time whatever the config's TET setting, what evaluation reads).
"""
from __future__ import annotations

from torch import nn

from ..config import SPIKFORMER_VARIANTS, ModelConfig
from .sdt import SpikeDrivenTransformer
from .spikformer import Spikformer

MODELS: dict[str, type[nn.Module]] = {"sdt": SpikeDrivenTransformer}
MODELS.update({variant: Spikformer for variant in SPIKFORMER_VARIANTS})


def build_model(cfg: ModelConfig) -> nn.Module:
    """A fresh model of ``cfg``'s backbone (its weights initialised as upstream does)."""
    return MODELS[cfg.backbone](cfg)
