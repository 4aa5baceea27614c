"""Test support: a shipped zoo model, its float graph and its integer graph as `snncompile compile` makes it."""
from dataclasses import dataclass
from functools import lru_cache

import torch

import snncompile
from snncompile.data import load_dataset
from snncompile.frontend import export
from snncompile.ir import Graph
from snncompile.passes import lower_to_loihi
from snncompile.sim.dataset import graph_feeds
from snncompile.zoo.registry import find_entry


@dataclass
class Lowered:
    graph: Graph        #: the exported float graph
    integer: Graph      #: the scheduled integer graph
    train: object       #: the training split (calibration comes from its first samples)
    test: object        #: the test split

    def test_feeds(self, count: int) -> dict[str, torch.Tensor]:
        return graph_feeds(self.integer, torch.stack([self.test[i][0] for i in range(count)]))


@lru_cache(maxsize=None)  # lowered once per session: several test files read the same models
def lowered_zoo_model(name: str, calibration: int = 16) -> Lowered:
    entry = find_entry(name)
    loaded = snncompile.load_checkpoint(entry.checkpoint)
    graph = export(loaded.model)
    train = load_dataset(entry.data, loaded.config, "train")
    test = load_dataset(entry.data, loaded.config, "test")
    integer = lower_to_loihi(graph, graph_feeds(graph, torch.stack([train[i][0] for i in range(calibration)])))
    return Lowered(graph, integer, train, test)
