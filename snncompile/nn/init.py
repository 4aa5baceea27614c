"""Weight initialisation the upstream models share."""
from __future__ import annotations

from torch import nn


def init_linear_weights(m: nn.Module) -> None:
    """timm-style ``_init_weights`` of the Spikformer, QKFormer and Spike-Driven Transformer V2/V3 code: truncated-
    normal (std 0.02) ``Linear`` weights and zero biases; every other module keeps torch's default (``model.apply``)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
