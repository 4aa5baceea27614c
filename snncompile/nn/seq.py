"""Per-timestep containers for user models built from ``nn.Sequential`` (SpikingJelly's multi-step style).

Our neurons and zoo modules take time-major ``[T, B, ...]`` streams, PyTorch's stateless layers take
``[N, ...]`` batches. :class:`PerStep` applies stateless layers to every timestep of a stream
(SpikingJelly's ``SeqToANNContainer``), so a user model such as::

    nn.Sequential(PerStep(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8)), MultiStepLIF(),
                  PerStep(nn.Flatten(), nn.Linear(8 * 16 * 16, 10)))

runs on ``[T, B, 2, 16, 16]`` in torch and exports with :func:`snncompile.frontend.export`, which reads
a bare stateless layer inside an ``nn.Sequential`` the same way (per timestep).
"""
from __future__ import annotations

import torch
from torch import nn


def per_step(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a stateless ``fn`` to every timestep of a ``[T, B, ...]`` stream as one ``[T*B, ...]`` batch."""
    T, B = x.shape[:2]
    y = fn(x.flatten(0, 1))
    return y.reshape(T, B, *y.shape[1:])


class PerStep(nn.Sequential):
    """Stateless layers applied to each timestep: ``[T, B, *s] -> [T*B, *s] -> layers -> [T, B, *s']``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"PerStep expects a [T, B, ...] stream, got shape {tuple(x.shape)}")
        return per_step(x, super().forward)
