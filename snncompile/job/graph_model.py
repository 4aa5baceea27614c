"""A float graph read from a graph file (NIR; netx) standing where the job takes a trained checkpoint.

A graph file has no checkpoint, no data set and no model configuration: :class:`GraphModel` carries the float
IR graph with what the job and the data loaders read of a :class:`~snncompile.zoo.checkpoint.LoadedCheckpoint`
(``name``, ``path``, ``source``, ``notes``, ``transform``, ``dataset``; ``loader_config`` gives the data loaders
the graph's input channels, image size, time steps and classes), and :class:`GraphInputs` feeds a data set's samples to
the graph's input: a static image repeated over the graph's steps, a sample of another layout with as many
values per step reshaped to the graph's input (an image flattened for a graph whose input is a vector).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, ModelConfig
from ..data import CHANNELS
from ..ir import Graph


@dataclass(frozen=True)
class GraphModel:
    """A float IR graph from a graph file; ``options``: the reader's options (``time_steps``, ``dt``, the
    convention), recorded so the compile record loads it again."""

    graph: Graph
    path: Path
    source: str                                           #: the reader: "nir", "netx"
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    transform: dict = field(default_factory=dict)         #: no evaluation transform (image folders)
    dataset: str | None = None                            #: a graph file names no data set

    @property
    def name(self) -> str:
        return self.path.stem

    def input_shape(self) -> tuple[int, ...]:
        (name,) = self.graph.inputs()
        return tuple(self.graph.op(name).shape)

    def loader_config(self, dataset: str) -> ModelConfig:
        """The configuration the data loaders shape ``dataset``'s samples by: the graph's steps and classes,
        its input's channels and size (a vector input: square images of the data set's channels)."""
        shape = self.input_shape()
        if len(shape) == 3:
            channels, size = shape[0], shape[1]
        else:
            channels = CHANNELS.get(dataset, (1,))[0]
            size = math.isqrt(math.prod(shape) // channels)
        classes = math.prod(self.graph.types()[self.graph.outputs[0]].shape)
        return ModelConfig(in_channels=channels, img_size=size, time_steps=self.graph.time_steps,
                           num_classes=classes, dvs_mode=self.graph.op(self.graph.inputs()[0]).time == "stream")


class GraphInputs:
    """A data set's ``(x, y)`` samples in the layout of ``graph``'s stream input ``[T, *shape]``: a sample of
    ``prod(shape)`` values (a static image) repeated over the ``T`` steps, one of ``T`` steps of that many
    values each reshaped step by step. Any other sample, or one whose values the input's type cannot hold (an
    integer graph's spike or integer input: a netx network's), is one error naming both."""

    def __init__(self, data_set, graph: Graph, what: str):
        (name,) = graph.inputs()
        self.data_set, self.shape, self.steps, self.what = data_set, tuple(graph.op(name).shape), graph.time_steps, what
        self.dtype = graph.types()[name].dtype

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype.kind == "float" or not x.numel():
            return x
        lo, hi = self.dtype.min, self.dtype.max
        if torch.any(x != torch.round(x)) or x.min().item() < lo or x.max().item() > hi:
            raise ConfigError(f"{self.what}: the graph's input takes {self.dtype} values, a sample holds values in "
                              f"[{x.min().item():g}, {x.max().item():g}]: give data in the input's format")
        return x

    def __len__(self) -> int:
        return len(self.data_set)

    def __getitem__(self, i: int):
        x, y = self.data_set[i]
        x = torch.as_tensor(x)
        size = math.prod(self.shape)
        if x.numel() == size:
            return self._checked(x.reshape(self.shape).expand(self.steps, *self.shape).contiguous()), y
        if x.dim() >= 1 and x.shape[0] == self.steps and x[0].numel() == size:
            return self._checked(x.reshape(self.steps, *self.shape)), y
        raise ConfigError(f"{self.what}: a sample of shape {list(x.shape)} does not fit the graph's input "
                         f"[{self.steps} steps, {', '.join(map(str, self.shape))}]")


__all__ = ["GraphModel", "GraphInputs"]
