"""What every backbone's torch model shares: its checked config, the time-stepped input convention, and the
logits evaluation reads."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


class BackboneModel(nn.Module):
    """Base of each backbone's model class (:mod:`.backbones`): refuses an invalid config, naming every problem,
    and keeps it as ``cfg``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if problems := cfg.problems():
            raise ValueError("invalid model config: " + "; ".join(problems))
        self.cfg = cfg

    def time_major_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` from a static ``[B, C, H, W]`` image (repeated over T) or events ``[B, T, C, H, W]``."""
        c, s = self.cfg.in_channels, self.cfg.img_size
        if x.dim() == 4 and tuple(x.shape[1:]) == (c, s, s):
            return x.unsqueeze(0).repeat(self.cfg.time_steps, 1, 1, 1, 1)
        if x.dim() == 5 and tuple(x.shape[2:]) == (c, s, s):
            if x.shape[1] != self.cfg.time_steps:
                raise ValueError(f"input has {x.shape[1]} timesteps, the model expects "
                                 f"time_steps={self.cfg.time_steps}")
            return x.transpose(0, 1).contiguous()
        raise ValueError(f"input shape {tuple(x.shape)} is neither [B, {c}, {s}, {s}] (static) nor "
                         f"[B, T, {c}, {s}, {s}] (events)")

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` (what evaluation reads)."""
        return self(x)


__all__ = ["BackboneModel"]
