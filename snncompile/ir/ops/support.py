"""What every op type declares about itself for the stages after the IR (one home per op type).

An op class carries, next to its fields and semantics (``base.py``):

- ``ROLE`` (:data:`ROLES`): what the op is to placement, counting, the backends and the docs;
- ``DENDRITIC``: it may be computed in the dendrite of the core that receives its inputs when these are
  synaptic sums (an integer sum, shift or delay of currents), so it needs no compartments of its own;
- ``RELAYED``: its output reaches its readers through synapses of weight 1 into their dendrites (a graded
  relay of partial sums), so dendritic arithmetic reading it computes in the receiving core;
- ``BIAS_PASSES``: a constant per channel added to its input comes out added to its output, delayed with it (a
  max-pool with ``-inf`` padding, a delay line), so a synapse's bias may move past it to a neuron or a sum;
- ``STEPPING`` (:data:`STEPPINGS`): how it steps in time;
- ``WORK`` (:data:`WORK_KINDS`): what the activity counts record of it per step;
- ``BACKENDS``: per backend, the key of its mapping there or :class:`Refused` with the reason it has none.

The families the stages use (neurons, synapses, host ops, ...) are queries over these declarations
(``snncompile.ir.ops.family``, ``ops_where``), never lists kept by a stage. ``tests/test_op_registry.py`` walks
the registry and fails for an op type that lacks any of them, and for a backend key no backend implements.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

Role = Literal["io", "host", "synapse", "neuron", "accumulate", "elementwise", "pool", "shape"]
ROLES: dict[str, str] = {
    "io": "the graph's boundary (Input, Output)",
    "host": "computed by the host whatever feeds it: time-layout changes, quantisation of real values, "
            "real-valued scaling of the readout",
    "synapse": "a weighted sum over input elements (dense or convolution): synaptic operations per input event",
    "neuron": "a spiking or integrating compartment with state carried from step to step",
    "accumulate": "a product of two activations (spiking attention): accumulates no synapse performs",
    "elementwise": "a function of each element (or a sum of several streams) at the same position",
    "pool": "a reduction over spatial windows or all tokens of a [C, H, W] map",
    "shape": "a reshape: values unchanged",
}

Stepping = Literal["local", "state", "history", "layout"]
STEPPINGS: dict[str, str] = {
    "local": "y[t] depends on the inputs at step t only",
    "state": "y[t] depends on state carried from step t-1 (neurons)",
    "history": "y[t] depends on inputs before step t (temporal blocks and windows)",
    "layout": "defines or changes the time layout (static <-> stream, the graph's boundary)",
}

Work = Literal["synaptic", "attention", "neuron", "none"]
WORK_KINDS: dict[str, str] = {
    "synaptic": "synaptic operations: each non-zero input element times its fan-out (``Op.fan_out``)",
    "attention": "integer accumulates into each output element (``Op.work``)",
    "neuron": "neuron updates, active or idle, from the input and the state traces",
    "none": "nothing is counted: data movement, reshapes, sums and pools a core does while routing, host "
            "arithmetic outside the chip, and float ops that only exist before lowering",
}


@dataclass(frozen=True)
class Refused:
    """A backend has no mapping for the op type; ``reason`` says why, for the user who meets it."""

    reason: str

    def __post_init__(self):
        if not self.reason.strip():
            raise ValueError("a refusal needs a reason")


Mapping = str | Refused

LAVA_KEYS = {
    "host": "computed by the IR on the host, before the chip (its inputs are host values) or after it",
    "local": "a custom process that runs the node's own semantics on each step's inputs",
    "synapse": "a synapse process (its bias starts at an absolute step): Lava's Dense/Conv where they match",
    "neuron": "a Loihi compartment: Lava's own LIF/TernaryLIF models",
    "history": "a custom process that keeps its input history (temporal blocks)",
}
ONNX_KEYS = {"function": "a model-local ONNX function named after the op type (backends/onnx/functions.py)"}
NETX_KEYS = {
    "input": "the network's input (the feed of the exported chain)",
    "output": "the graph's output, read on the host",
    "synapse": "a netx Dense or Conv layer's synapse",
    "neuron": "a netx layer's CUBA neuron",
    "fold": "folded into the next synapse's weights (sum pool, flatten)",
}


@dataclass(frozen=True)
class Backends:
    """Per backend, how it maps the op type (a key its mapping code implements) or why it cannot.

    ``lava``: one of :data:`LAVA_KEYS`; ``onnx``: one of :data:`ONNX_KEYS`; ``nir``: the NIR node type the
    exporter writes (``"folded"`` into the previous node, ``"dissolved"`` into NIR's summed edges); ``netx``:
    one of :data:`NETX_KEYS`. Each may be :class:`Refused` instead."""

    lava: Mapping
    onnx: Mapping
    nir: Mapping
    netx: Mapping

    def get(self, backend: str) -> Mapping:
        if backend not in BACKEND_NAMES:
            raise KeyError(f"unknown backend {backend!r}; known: {', '.join(BACKEND_NAMES)}")
        return getattr(self, backend)


BACKEND_NAMES = tuple(f.name for f in fields(Backends))

# Reasons shared by several op types (each backend's own words; quoted where a user meets a refusal)
NIR_NO_PRODUCT = ("NIR has no node that multiplies two activations: every NIR node has one input and fan-in "
                  "edges are always summed, so a product of two streams (spiking attention's Q·K / K·V) cannot "
                  "be written")
NIR_INTEGER = ("an integer Loihi node: NIR is continuous-time and untyped, with no integer arithmetic (Loihi's "
               "12-bit decays truncating toward zero, 24-bit wrap and saturation, shifts) and no step delay; "
               "export the float graph before lowering")
ONNX_INTEGER = ("an integer Loihi node (exact int64 arithmetic, two's complement wrap or saturation, a scheduling "
                "delay): this export writes float32 graphs only, so it is refused rather than approximated; run "
                "it with snncompile.sim.run_graph or on the Lava target")
NETX_PRODUCT = ("attention: netx has no layer that multiplies two spike streams (the Q·K / K·V products); lava-dl "
                "has no attention block")
NETX_FLOAT = ("a float node: netx layers are integer Loihi blocks; lower the graph (lower_to_loihi) and export the "
              "integer graph")
LAVA_FLOAT = "a float node: only integer streams run on the chip; lower the graph (lower_to_loihi) first"

__all__ = ["Role", "ROLES", "Stepping", "STEPPINGS", "Work", "WORK_KINDS", "Refused", "Backends", "BACKEND_NAMES",
           "LAVA_KEYS", "ONNX_KEYS", "NETX_KEYS"]
