"""Record the output of every spiking neuron of a model during a forward pass."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .neurons import MultiStepLIF


def neuron_modules(model: nn.Module) -> dict[str, MultiStepLIF]:
    """Every spiking neuron of ``model`` by qualified name, in forward (registration) order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}


@contextmanager
def record_spikes(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``spikes[name]`` holds the last ``[T, ...]`` output of each neuron module."""
    spikes: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, name=name: spikes.__setitem__(name, out.detach()))
               for name, m in neuron_modules(model).items()]
    try:
        yield spikes
    finally:
        for h in handles:
            h.remove()
