"""The Lava backend's own Processes (interfaces only; their ``fixed_pt`` models are in :mod:`.models`).

Lava has no process for most of what a lowered spiking transformer computes (spike x spike accumulates,
temporal blocks, max on currents, residual sums with a narrow wrap, LUTs, synapses with a delayed bias), so
the backend runs those IR nodes in its own Processes. Every Process here is generic: what it computes is a
*kernel* object passed as the ``kernel`` parameter (Lava hands ``proc_params`` to the model in the forked
child unchanged), built by :mod:`.mapping` from the IR node itself.

- :class:`UnaryNode`, :class:`BinaryNode`: one IR node (per-op granularity), inputs ``in0`` (and ``in1``),
  output ``out``; ports carry one timestep of the whole batch in the backend's Lava layout
  (``models.lava_shape``).
- :class:`FusedNodes`: several IR nodes in one Process (fused granularity). ``bus_in``/``bus_out`` carry a
  flat vector (a *bus*) in which every value its senders hand their readers has its own slot; a Process
  writes only its own slots and Lava sums what arrives at an InPort, so one InPort receives any number of
  producers (the ports a connection joins share one layout; others have their own length:
  ``mapping.bus_layouts``). ``rec_out`` carries the recorded (exposed) values to the one Extractor the same
  way (a record vector with a slot per recorded value).

Import-safe by necessity: Lava's compiler imports every module of this package and executes every ``.py``
file of this directory when it looks for a Process's models (spec lava_loihi.md §1.4). This module only
defines classes and uses absolute imports (a file executed on its own has no package).
"""
from __future__ import annotations

import snncompile.backends.lava.first_import  # noqa: F401 -- before Lava's first import (its docstring)
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess


class UnaryNode(AbstractProcess):
    """One IR node with one input port (several producers on ``in0`` are summed by Lava: ``IntAdd``)."""

    def __init__(self, *, kernel, in_shape: tuple[int, ...], out_shape: tuple[int, ...], name: str | None = None):
        super().__init__(kernel=kernel, name=name)
        self.in0 = InPort(shape=in_shape)
        self.out = OutPort(shape=out_shape)


class BinaryNode(AbstractProcess):
    """One IR node with two input ports (attention operands, masks, products)."""

    def __init__(self, *, kernel, in_shapes: tuple[tuple[int, ...], tuple[int, ...]], out_shape: tuple[int, ...],
                 name: str | None = None):
        super().__init__(kernel=kernel, name=name)
        self.in0 = InPort(shape=in_shapes[0])
        self.in1 = InPort(shape=in_shapes[1])
        self.out = OutPort(shape=out_shape)


class FusedNodes(AbstractProcess):
    """Several IR nodes stepped in one Process, talking to the others over the bus (see the module doc)."""

    def __init__(self, *, kernel, in_size: int, out_size: int, rec_size: int, name: str | None = None):
        super().__init__(kernel=kernel, name=name)
        self.bus_in = InPort(shape=(in_size,))
        self.bus_out = OutPort(shape=(out_size,))
        self.rec_out = OutPort(shape=(rec_size,))


__all__ = ["UnaryNode", "BinaryNode", "FusedNodes"]
