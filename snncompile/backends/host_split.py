"""Which nodes of a lowered graph the host computes, before and after the chip: one rule for every backend
(placement places the chip part on cores, the Lava backend maps it to processes), from each op type's
declarations in the op registry.

- *before the chip*: the graph's inputs and what the host computes from them alone: static (once per sample)
  values and the ops only the host computes (``BACKENDS.lava == "host"``: a static image's first convolution
  ``*.host``, ``Quantize``, the ``Repeat`` that streams it), the graph's outputs excepted;
- *after the chip*: what the host computes whatever feeds it (roles ``io`` and ``host``: outputs, the time
  mean, scales), static values that read the chip, and everything reading what the host computed after the
  chip (an imported ``LI`` readout behind its ``Scale``);
- the *chip*: every other node. A host-only op there (a float convolution reading the chip) is the backend's
  to refuse.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph
from ..ir.types import TensorType


@dataclass(frozen=True)
class HostSplit:
    """The three parts, each in topological order."""

    before: tuple[str, ...]
    chip: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def host(self) -> tuple[str, ...]:
        return self.before + self.after


def split_host(graph: Graph, types: dict[str, TensorType] | None = None) -> HostSplit:
    types = types or graph.types()
    before, chip, after = [], [], []
    for name in graph.topo_order():
        op, inputs = graph.op(name), graph.nodes[name].inputs
        host_only = op.BACKENDS.lava == "host"
        static = types[name].time == "static"
        if set(inputs) <= set(before) and (static or (host_only and not (op.ROLE == "io" and inputs))):
            before.append(name)
        elif static or (host_only and op.ROLE in ("io", "host")) or set(inputs) & set(after):
            after.append(name)
        else:
            chip.append(name)
    return HostSplit(tuple(before), tuple(chip), tuple(after))


__all__ = ["HostSplit", "split_host"]
