"""Reference harness: run one of our small integer graphs, as placed by ``place``, in SANA-FE's Loihi model.

SANA-FE (PyPI ``sanafe`` 2.2.9; Boyle et al., IEEE TCAD 2025, doi:10.1109/TCAD.2025.3537971; repository
SLAM-Lab/SANA-FE) simulates a neuromorphic chip at timestep granularity and reports energy and latency. This
module builds the same network in its Loihi architecture (``sanafe/examples/loihi.yaml``, the repository's
``arch/loihi.yaml``) and returns its figures, so that our estimate can be checked against them::

    result = run_sanafe(graph, placement, feeds)          # feeds: {input: [T, 1, N] binary spikes}
    result.energy_pj, result.latency_per_step_ns, result.spikes, result.synaptic_events

Supported graphs: a chain ``Input (spike, [N]) -> IntDense -> LoihiLIF -> IntDense -> LoihiLIF ...`` (one or
more synapse/neuron pairs), optionally read by ``Output`` nodes at the end; batch 1. Anything else raises
:class:`SanafeHarnessError`.

Mapping
-------
- **Cores.** Our core ``c`` lies in tile ``T = c // 4`` at position ``c % 4``. SANA-FE numbers the tiles of
  its 8 x 4 mesh column by column (tile ``T'`` at ``x = T' // 4``, ``y = T' % 4``), our
  ``snncompile.report.cores.tile_position`` row by row (``x = T % 8``, ``y = T // 8``, ``mesh_columns`` 8).
  ``layout="ours"`` (default) maps our core to the SANA-FE core at the same mesh position, so hop counts are
  ours; ``layout="sanafe"`` keeps the core number (SANA-FE core ``c``). Neurons are mapped in our compartment
  order, slice by slice.
- **Input.** The graph's input is a host stream; in SANA-FE it is a group of ``input``-model neurons (one
  zero-cost ``loihi_inputs[k]`` soma unit each, each replaying its own spike train), so every input spike
  enters exactly as in our graph and the synaptic events of the first synapse match ours. The input neurons
  sit on the first cores after the placement's (``input_core``; up to 1024 per core). Their somas cost
  nothing, but every input spike sends one message per destination core (``message_out`` energy, hops,
  receive time): that is charged in SANA-FE's totals and reported apart in :attr:`SanafeResult.input_share_pj`.
  The input cores' tiles count towards the barrier-sync table (mapped tiles).
- **Timing.** SANA-FE step ``k`` (1-based) is our step ``t = k - 1``: an input neuron fires with our
  ``x[t]``; its messages are processed by the synapses in the same step and reach the soma in the next step,
  which is our ``IntDense`` with ``delay=1``. Every neuron's soma updates every step.
- **Neuron model (mode "model").** SANA-FE's ``leaky_integrate_fire`` keeps a float potential ``p`` and current
  ``i``: ``p <- trunc(p * leak_decay * 64) / 64`` (no leak on the first step), ``p += bias``,
  ``i <- i * input_decay + input``, ``p += i``, fire and hard-reset to 0 when ``p > threshold``. With ``p`` in
  units of Lava's ``v / 64``, weights ``w << weight_exp``, ``threshold = vth``, ``bias = (bias_mant <<
  bias_exp) / 64``, ``leak_decay = (4096 - voltage_decay) / 4096`` and ``input_decay = (4096 -
  current_decay) / 4096`` this is Lava's fixed-point LIF exactly (every value is a multiple of 1/64 held
  exactly in a double, and the truncation is Lava's ``trunc0(v * keep / 4096)``) when ``current_decay`` is
  4096 or 0, as long as ``u`` does not wrap and ``v`` does not saturate at 24 bits. SANA-FE does not
  truncate the decayed current, so any other ``current_decay`` drifts.
- **Neuron model (mode "forced").** For other current decays (mode ``"auto"`` picks it), the same neurons
  run step by step with their threshold set before each step to -1e30 or +1e30 so that they fire exactly
  when our simulator's neurons fire; spikes, messages, synaptic events and hence those energies match, but
  SANA-FE's idle/updated status then follows its own (approximate) potential.

Energy breakdown (pJ; SANA-FE's figures read from the same arch file)::

    synapse        = synaptic events * energy_process_spike          (one event per non-zero weight reached)
    soma_access    = mapped LIF neurons * steps * energy_access_neuron  (idle neurons too)
    soma_update    = updated-or-fired LIF neurons * energy_update_neuron
    soma_spike_out = fired LIF neurons * energy_spike_out
    message_out    = messages * energy_message_out                   (one per (spiking neuron, destination core))
    message_in     = messages * energy_message_in                    (0 in the Loihi preset)
    hops_ew, hops_ns = hops east/west, north/south * per-hop energy  (dimension-order routing)
    dendrite       = SANA-FE's dendrite energy                       (0 in the Loihi preset)

Each part is rebuilt from SANA-FE's own per-step counters and traces (per-core synapse and soma energies
logged by SANA-FE, its spike and message traces) and checked to sum to SANA-FE's reported synapse, soma,
network and total energies; a mismatch raises (the description above would then be wrong).

The arch file is patched at run time (never stored): per-unit energy logging is switched on for the dense
synapse and LIF soma units, and the zero-cost input soma units are trimmed from 1024 to as many as the input
layer needs per core (building 128 x 1024 of them takes seconds); no figure changes.
"""
from __future__ import annotations

import contextlib
import io
import math
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Mapping

import numpy as np
import sanafe
import torch
import yaml

from snncompile.backends.placement import Placement
from snncompile.ir import Graph
from snncompile.ir.io import graph_digest
from snncompile.ir.ops import IntDense, LoihiLIF
from snncompile.sim import run_graph

SYNAPSE_UNIT = "loihi_dense_synapse"
SOMA_UNIT = "loihi_lif"
INPUT_UNIT = "loihi_inputs"
_FORCE = 1e30          # a threshold no potential reaches (or always exceeds, negated)
_PJ, _NS = 1e12, 1e9   # SANA-FE works in joules and seconds


class SanafeHarnessError(ValueError):
    """The graph, placement or feeds are outside what this harness supports, or SANA-FE disagreed with it."""


# -- the graph -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """One ``IntDense -> LoihiLIF`` pair of the chain; ``weight`` is the effective ``w << weight_exp``."""

    synapse: str
    neuron: str
    source: str          # the group feeding the synapse: the input or the previous layer's neuron
    weight: np.ndarray   # [out, in] int64
    lif: LoihiLIF


def chain_layers(graph: Graph) -> tuple[str, list[Layer]]:
    """The input node and the layers of a supported chain graph, or :class:`SanafeHarnessError` saying why not."""
    graph.validate()
    types = graph.types()
    inputs = graph.inputs()
    if len(inputs) != 1:
        raise SanafeHarnessError(f"the graph must have exactly one input, got {inputs}")
    src = inputs[0]
    t = types[src]
    if t.time != "stream" or not t.dtype.is_spike or len(t.shape) != 1:
        raise SanafeHarnessError(f"the input {src!r} must be a 1-D spike stream, got {t}")
    layers: list[Layer] = []
    while True:
        consumers = graph.consumers(src)
        kinds = {graph.op(c).type_name() for c in consumers}
        if layers and kinds <= {"Output"}:
            break  # the last neuron, read by the host only (or by nothing)
        if len(consumers) != 1 or not isinstance(graph.op(consumers[0]), IntDense):
            raise SanafeHarnessError(f"{src!r} must feed exactly one IntDense (a chain Input -> IntDense -> "
                                     f"LoihiLIF -> ...), but feeds {consumers}")
        syn_name = consumers[0]
        syn = graph.op(syn_name)
        problems = []
        if syn.delay != 1:
            problems.append(f"delay {syn.delay} (SANA-FE delivers synaptic input one step later: delay 1 only)")
        if syn.bias is not None:
            problems.append("a bias (SANA-FE synapses carry none)")
        if syn.weight_exp < 0:
            problems.append(f"weight_exp {syn.weight_exp} < 0 (the floor of the shifted sum has no SANA-FE "
                            f"counterpart)")
        weight = syn.weight.astype(np.int64) << max(syn.weight_exp, 0)
        if not problems and int(np.abs(weight).sum(1).max(initial=0)) >= 1 << (syn.out_bits - 1):
            problems.append(f"sums that may overflow out_bits={syn.out_bits} (SANA-FE does not wrap)")
        if problems:
            raise SanafeHarnessError(f"IntDense {syn_name!r} has " + "; ".join(problems))
        after = graph.consumers(syn_name)
        if len(after) != 1 or type(graph.op(after[0])) is not LoihiLIF:
            raise SanafeHarnessError(f"IntDense {syn_name!r} must feed exactly one LoihiLIF, feeds {after}")
        layers.append(Layer(syn_name, after[0], src, weight, graph.op(after[0])))
        src = after[0]
    return inputs[0], layers


# -- SANA-FE's Loihi figures ------------------------------------------------------------------------------------

def _arch_doc() -> dict:
    return yaml.safe_load((files("sanafe.examples") / "loihi.yaml").read_text())


def _units(core: dict, section: str) -> dict[str, dict]:
    return {u["name"]: u["attributes"] for u in core[section]}


@dataclass(frozen=True)
class LoihiFigures:
    """The Loihi preset's per-event figures in pJ and ns, and its chip structure (from ``loihi.yaml``)."""

    synapse_energy: float
    synapse_latency: float
    access_energy: float
    access_latency: float
    update_energy: float
    update_latency: float
    spike_out_energy: float
    spike_out_latency: float
    message_out_energy: float
    message_out_latency: float
    message_in_energy: float
    message_in_latency: float
    hop_energy: Mapping[str, float]     # east, west, north, south
    hop_latency: Mapping[str, float]
    sync_table_ns: Mapping[int, float]  # mapped tiles -> barrier time; the largest key <= tiles applies
    mesh: tuple[int, int]               # (width, height) in tiles
    cores_per_tile: int
    neurons_per_core: int

    @staticmethod
    def from_arch(doc: dict | None = None) -> "LoihiFigures":
        doc = doc or _arch_doc()
        a = doc["architecture"]
        tile = a["tile"][0]
        core = tile["core"][0]
        syn, soma = _units(core, "synapse")[SYNAPSE_UNIT], _units(core, "soma")[SOMA_UNIT]
        ain, aout = core["axon_in"][0]["attributes"], core["axon_out"][0]["attributes"]
        t = tile["attributes"]
        dirs = ("east", "west", "north", "south")
        attrs = a["attributes"]
        if attrs.get("sync_model") != "table":
            raise SanafeHarnessError(f"expected the 'table' sync model in loihi.yaml, got {attrs.get('sync_model')!r}")
        cores = _range_count(core["name"])
        return LoihiFigures(
            syn["energy_process_spike"] * _PJ, syn["latency_process_spike"] * _NS,
            soma["energy_access_neuron"] * _PJ, soma["latency_access_neuron"] * _NS,
            soma["energy_update_neuron"] * _PJ, soma["latency_update_neuron"] * _NS,
            soma["energy_spike_out"] * _PJ, soma["latency_spike_out"] * _NS,
            aout["energy_message_out"] * _PJ, aout["latency_message_out"] * _NS,
            ain["energy_message_in"] * _PJ, ain["latency_message_in"] * _NS,
            {d: t[f"energy_{d}_hop"] * _PJ for d in dirs}, {d: t[f"latency_{d}_hop"] * _NS for d in dirs},
            {int(k): v * _NS for k, v in attrs["latency_sync"].items()},
            (int(attrs["width"]), int(attrs["height"])), cores,
            int(core["attributes"]["max_neurons_supported"]))

    def sync_ns(self, mapped_tiles: int) -> float:
        """SANA-FE's table lookup: the entry of the largest key <= ``mapped_tiles`` (the first below all)."""
        keys = sorted(self.sync_table_ns)
        below = [k for k in keys if k <= mapped_tiles]
        return self.sync_table_ns[below[-1] if below else keys[0]]


def _range_count(name: str) -> int:
    """``unit[0..3]`` -> 4, ``unit`` -> 1."""
    if "[" not in name:
        return 1
    lo, hi = name[name.index("[") + 1:name.index("]")].split("..")
    return int(hi) - int(lo) + 1


def _patched_arch(input_units: int) -> tuple[object, LoihiFigures]:
    """Load the Loihi preset with energy logging on the synapse and soma units and ``input_units`` input
    soma units per core (see the module docstring); returns the architecture and its figures."""
    doc = _arch_doc()
    figures = LoihiFigures.from_arch(doc)
    core = doc["architecture"]["tile"][0]["core"][0]
    for section, unit in (("synapse", SYNAPSE_UNIT), ("soma", SOMA_UNIT)):
        for u in core[section]:
            if u["name"] == unit:
                u["attributes"]["log_energy"] = True
    for u in core["soma"]:
        if u["name"].startswith(INPUT_UNIT + "["):
            u["name"] = f"{INPUT_UNIT}[0..{max(input_units, 1) - 1}]"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loihi_logged.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        arch = sanafe.load_arch(str(path))
    return arch, figures


# -- the result --------------------------------------------------------------------------------------------------

ENERGY_UNITS = ("synapse", "dendrite", "soma_access", "soma_update", "soma_spike_out", "message_out", "message_in",
                "hops_ew", "hops_ns")


@dataclass
class SanafeResult:
    """What SANA-FE reported for one run (see the module docstring). Per-step tuples have ``steps`` entries,
    index ``k`` being SANA-FE step ``k + 1`` = our step ``k``. Energies in pJ, times in ns."""

    steps: int
    mode: str                                   # "model" or "forced"
    timing_model: str                           # SANA-FE's "detailed" or "simple"
    energy_pj: dict[str, float]                 # ENERGY_UNITS totals and "total"
    energy_per_step_pj: dict[str, tuple[float, ...]]
    energy_reported_pj: dict[str, float]        # SANA-FE's own categories: synapse, dendrite, soma, network, total
    latency_per_step_ns: tuple[float, ...]      # SANA-FE's simulated time of each step
    sync_ns: float                              # the barrier included in every step
    neuron_phase_max_ns: tuple[float, ...]      # per step, max over cores of the summed message generation delays
    receive_phase_max_ns: tuple[float, ...]     # per step, max over cores of the summed message processing delays
    spikes: dict[str, tuple[int, ...]]          # group (input, each LIF node) -> spikes per step
    synaptic_events: dict[str, tuple[int, ...]]  # IntDense node -> events per step
    neurons_updated: dict[str, tuple[int, ...]]  # LIF node -> updated (incl. fired) neurons per step
    neurons_mapped: dict[str, int]
    messages: dict[str, tuple[int, ...]]        # sending group -> messages per step
    hops: dict[str, tuple[int, ...]]            # east, west, north, south -> hops per step
    cores: dict[str, tuple[int, ...]]           # group -> our core ids
    sanafe_cores: dict[str, tuple[int, ...]]    # group -> the SANA-FE core ids they were mapped to
    mapped_tiles: int
    input_share_pj: dict[str, float]            # message_out and hops of the input's messages (in the totals)
    reference_spikes: dict[str, tuple[int, ...]]  # our simulator's spikes per LIF node and step
    figures: LoihiFigures = field(repr=False)

    @property
    def energy_total_pj(self) -> float:
        return self.energy_pj["total"]

    @property
    def latency_total_ns(self) -> float:
        return sum(self.latency_per_step_ns)

    def summary(self) -> str:
        lines = [f"SANA-FE Loihi ({self.mode}, {self.timing_model} timing), {self.steps} steps, "
                 f"{self.mapped_tiles} tile(s): {self.energy_total_pj:.1f} pJ, {self.latency_total_ns:.1f} ns"]
        lines += [f"  {k:15s} {self.energy_pj[k]:12.1f} pJ" for k in ENERGY_UNITS]
        lines.append("  latency/step ns " + " ".join(f"{v:.1f}" for v in self.latency_per_step_ns))
        return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------------------------

def _feed(graph: Graph, input_name: str, feeds, steps: int) -> torch.Tensor:
    x = feeds[input_name] if isinstance(feeds, Mapping) else feeds
    if isinstance(feeds, Mapping) and set(feeds) != {input_name}:
        raise SanafeHarnessError(f"feeds must name exactly the input {input_name!r}, got {sorted(feeds)}")
    x = torch.as_tensor(x)
    n = graph.types()[input_name].shape[0]
    if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != n:
        raise SanafeHarnessError(f"the input must be [T, 1, {n}] (batch 1), got {tuple(x.shape)}")
    if x.shape[0] > steps:
        raise SanafeHarnessError(f"the input has {x.shape[0]} steps, more than the {steps} simulated")
    if not bool(((x == 0) | (x == 1)).all()):
        raise SanafeHarnessError("the input must hold binary spikes (0/1)")
    out = torch.zeros(steps, 1, n, dtype=torch.float32)
    out[:x.shape[0]] = x.to(torch.float32)
    return out


def _slices(placement: Placement, layer: Layer, neurons: int) -> list[tuple[int, int, int]]:
    unit = placement.nodes.get(layer.neuron)
    if unit is None:
        raise SanafeHarnessError(f"the placement has no unit {layer.neuron!r}")
    if layer.synapse not in unit.attached:
        raise SanafeHarnessError(f"the placement does not attach {layer.synapse!r} to {layer.neuron!r}")
    if unit.order != "channel" or unit.neurons != neurons:
        raise SanafeHarnessError(f"unit {layer.neuron!r}: expected {neurons} compartments in channel order, got "
                                 f"{unit.neurons} in {unit.order!r} order")
    return [(s.core, s.start, s.stop) for s in unit.slices]


def _lif_attributes(lif: LoihiLIF, n: int) -> list[dict]:
    bias = np.broadcast_to(np.asarray(lif.bias_mant, dtype=np.int64) << lif.bias_exp, (n,))
    common = {"threshold": float(lif.vth), "reset": 0.0, "reset_mode": "hard",
              "leak_decay": (4096 - lif.voltage_decay) / 4096, "input_decay": (4096 - lif.current_decay) / 4096}
    return [{**common, "bias": float(b) / 64} for b in bias]


def run_sanafe(graph: Graph, placement: Placement, feeds, steps: int | None = None, *, mode: str = "auto",
               timing_model: str = "detailed", input_core: int | None = None, layout: str = "ours",
               check: bool = True) -> SanafeResult:
    """Run ``graph`` (a chain, see the module docstring) placed by ``placement`` in SANA-FE's Loihi model.

    ``feeds``: ``{input: [T, 1, N]}`` binary spikes (or the tensor), zero-padded to ``steps`` (default
    ``graph.time_steps``). ``mode``: ``"model"`` (SANA-FE's LIF with our parameters), ``"forced"`` (thresholds
    driven to our spike trains) or ``"auto"`` (``model`` where it is exact: every ``current_decay`` 0 or 4096).
    ``input_core``: the first core (our numbering) for the input neurons (default: the first core after the
    placement's). ``layout``: ``"ours"`` or ``"sanafe"`` (see *Cores*). ``check``: raise if SANA-FE's spike
    trains differ from our simulator's.
    """
    input_name, layers = chain_layers(graph)
    steps = graph.time_steps if steps is None else int(steps)
    if steps < 1:
        raise SanafeHarnessError(f"steps must be >= 1, got {steps}")
    if placement.graph_digest != graph_digest(graph):
        raise SanafeHarnessError("the placement was made for another graph (digests differ)")
    exact = all(layer.lif.current_decay in (0, 4096) for layer in layers)
    if mode == "auto":
        mode = "model" if exact else "forced"
    if mode not in ("model", "forced"):
        raise SanafeHarnessError(f"mode must be 'auto', 'model' or 'forced', got {mode!r}")
    if layout not in ("ours", "sanafe"):
        raise SanafeHarnessError(f"layout must be 'ours' or 'sanafe', got {layout!r}")
    if mode == "model" and not exact:
        raise SanafeHarnessError("mode 'model' reproduces Lava's LIF only with current_decay 0 or 4096; use "
                                 "'forced' (or 'auto')")
    x = _feed(graph, input_name, feeds, steps)

    # our reference spike trains, [steps, N] per LIF node
    shadow = Graph(nodes=graph.nodes, outputs=graph.outputs, time_steps=steps, history=graph.history)
    values = run_graph(shadow, {input_name: x}, keep="all")
    ours = {layer.neuron: (values[layer.neuron][:, 0] != 0).numpy() for layer in layers}

    n_in = x.shape[2]
    first_input_core = placement.cores_used if input_core is None else int(input_core)
    per_core = min(n_in, 1024)
    input_cores = [first_input_core + i // per_core for i in range(n_in)]
    slices = {layer.neuron: _slices(placement, layer, layer.weight.shape[0]) for layer in layers}
    used = [core for s in slices.values() for core, _, _ in s]
    arch, fig = _patched_arch(per_core)
    hw_cores = arch.cores()
    if set(input_cores) & set(used):
        raise SanafeHarnessError(f"input_core {first_input_core} overlaps the placement's cores {sorted(set(used))}")
    if max(input_cores + used) >= len(hw_cores):
        raise SanafeHarnessError(f"SANA-FE's Loihi has {len(hw_cores)} cores; this mapping needs core "
                                 f"{max(input_cores + used)} (one chip only)")
    width, height = fig.mesh
    per_tile = fig.cores_per_tile

    def sanafe_core(c: int) -> int:
        if layout == "sanafe":
            return c
        tile = c // per_tile
        return ((tile % width) * height + tile // width) * per_tile + c % per_tile

    net = sanafe.Network()
    spikes_in = x[:, 0].numpy().astype(bool)
    group = net.create_neuron_group(input_name, n_in, log_spikes=True, soma_hw_name=f"{INPUT_UNIT}[0]")
    for i, neuron in enumerate(group):
        neuron.set_attributes(soma_hw_name=f"{INPUT_UNIT}[{i % per_core}]",
                              model_attributes={"spikes": [bool(v) for v in spikes_in[:, i]]})
        neuron.map_to_core(hw_cores[sanafe_core(input_cores[i])])
    our_cores: dict[str, list[int]] = {input_name: input_cores}
    groups = {input_name: group}
    for layer in layers:
        n = layer.weight.shape[0]
        g = net.create_neuron_group(layer.neuron, n, log_spikes=True, soma_hw_name=SOMA_UNIT,
                                    default_synapse_hw_name=SYNAPSE_UNIT)
        attributes = _lif_attributes(layer.lif, n)
        cores = [0] * n
        for core, start, stop in slices[layer.neuron]:
            for i in range(start, stop):
                cores[i] = core
                g[i].set_attributes(model_attributes=attributes[i])
                g[i].map_to_core(hw_cores[sanafe_core(core)])
        our_cores[layer.neuron] = cores
        groups[layer.neuron] = g
        dst, src = np.nonzero(layer.weight)  # only non-zero weights are synapses (our synaptic op count)
        groups[layer.source].connect_neurons_sparse(
            g, {"w": [float(v) for v in layer.weight[dst, src]]}, [(int(s), int(d)) for s, d in zip(src, dst)])

    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    traces = {"spike_trace": [], "perf_trace": {}, "message_trace": []}
    sim = dict(timing_model=timing_model, processing_threads=1, spike_trace=True, perf_trace=True,
               message_trace=True)
    with contextlib.redirect_stdout(io.StringIO()):  # SANA-FE prints a progress line per sim() call
        if mode == "model":
            _collect(traces, chip.sim(steps, **sim))
        else:
            mapped = chip.mapped_neuron_groups
            for t in range(steps):
                for layer in layers:
                    for i, neuron in enumerate(mapped[layer.neuron]):
                        neuron.set_attributes(model_attributes={"threshold": -_FORCE if ours[layer.neuron][t, i]
                                                                else _FORCE})
                _collect(traces, chip.sim(1, **sim))

    if check:
        _check_spikes(traces["spike_trace"], input_name, layers, ours, spikes_in)
    core_of = {g: [sanafe_core(c) for c in cores] for g, cores in our_cores.items()}
    result = _result(traces, steps, mode, timing_model, fig, input_name, layers, core_of, arch, ours)
    result.cores = {g: tuple(sorted(set(c))) for g, c in our_cores.items()}
    return result


def _collect(traces: dict, run: dict) -> None:
    traces["spike_trace"] += run["spike_trace"]
    traces["message_trace"] += run["message_trace"]
    for k, v in run["perf_trace"].items():
        traces["perf_trace"].setdefault(k, []).extend(v)


def _spike_matrix(spike_trace, group: str, steps: int, n: int) -> np.ndarray:
    fired = np.zeros((steps, n), bool)
    for t, step in enumerate(spike_trace):
        for address in step:
            if address.group_name == group:
                fired[t, address.neuron_offset] = True
    return fired


def _check_spikes(spike_trace, input_name: str, layers: list[Layer], ours: dict[str, np.ndarray],
                  spikes_in: np.ndarray) -> None:
    steps = spikes_in.shape[0]
    got = _spike_matrix(spike_trace, input_name, steps, spikes_in.shape[1])
    if not np.array_equal(got, spikes_in):
        raise SanafeHarnessError("SANA-FE's input neurons did not replay the input spike trains")
    for layer in layers:
        got = _spike_matrix(spike_trace, layer.neuron, steps, layer.weight.shape[0])
        if not np.array_equal(got, ours[layer.neuron]):
            diff = np.argwhere(got != ours[layer.neuron])
            raise SanafeHarnessError(f"{layer.neuron}: SANA-FE's spikes differ from our simulator's at "
                                     f"{len(diff)} (step, neuron) pairs, first {tuple(diff[0])}")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _result(traces, steps, mode, timing_model, fig: LoihiFigures, input_name: str, layers, core_of, arch,
            ours) -> SanafeResult:
    perf = traces["perf_trace"]
    if len(perf["sim_time"]) != steps:
        raise SanafeHarnessError(f"SANA-FE reported {len(perf['sim_time'])} steps, expected {steps}")
    # per-core energies SANA-FE logged for the synapse and soma units, keyed by core id
    unit_key = {(cid, unit): f"{tile.name}.{core.name}.{unit}.energy"
                for cid, (tile, core) in enumerate((t, c) for t in arch.tiles for c in t.cores)
                for unit in (SYNAPSE_UNIT, SOMA_UNIT)}

    def logged(unit: str, cores) -> np.ndarray:
        return sum(np.asarray(perf[unit_key[(c, unit)]], float) for c in sorted(set(cores))) * _PJ

    spike_trace = traces["spike_trace"]
    sizes = {input_name: len(core_of[input_name]), **{l.neuron: l.weight.shape[0] for l in layers}}
    fired = {g: _spike_matrix(spike_trace, g, steps, n) for g, n in sizes.items()}
    spikes = {g: tuple(int(v) for v in f.sum(1)) for g, f in fired.items()}

    synaptic_events, updated = {}, {}
    for layer in layers:
        cores = core_of[layer.neuron]
        syn = logged(SYNAPSE_UNIT, cores) / fig.synapse_energy
        synaptic_events[layer.synapse] = tuple(int(round(v)) for v in syn)
        # soma energy of these cores = access * neurons + update * updated + spike_out * fired
        soma = logged(SOMA_UNIT, cores)
        rest = soma - len(cores) * fig.access_energy - fired[layer.neuron].sum(1) * fig.spike_out_energy
        updated[layer.neuron] = tuple(int(round(v)) for v in rest / fig.update_energy)
    for layer in layers:  # the layers must not share cores for the per-core logs to be per layer
        others = {c for l in layers if l is not layer for c in core_of[l.neuron]}
        if others & set(core_of[layer.neuron]):
            raise SanafeHarnessError(f"{layer.neuron} shares a core with another layer")

    # messages and hops from the message trace (placeholders carry processing time only)
    groups = list(sizes)
    messages = {g: [0] * steps for g in groups}
    hops = {d: [0] * steps for d in ("east", "west", "north", "south")}
    input_msgs, input_hops = 0, {d: 0 for d in hops}
    neuron_phase, receive_phase = [], []
    for t, step in enumerate(traces["message_trace"]):
        sent, received = {}, {}
        for m in step:
            sent[m["src_core_id"]] = sent.get(m["src_core_id"], 0.0) + m["generation_delay"]
            if m["placeholder"]:
                continue
            received[m["dest_core_id"]] = received.get(m["dest_core_id"], 0.0) + m["processing_delay"]
            g = m["src_neuron_group_id"]
            messages[g][t] += 1
            dx, dy = m["dest_x"] - m["src_x"], m["dest_y"] - m["src_y"]
            h = {"east" if dx > 0 else "west": abs(dx), "north" if dy > 0 else "south": abs(dy)}
            for d, v in h.items():
                hops[d][t] += v
                if g == input_name:
                    input_hops[d] += v
            input_msgs += g == input_name
        neuron_phase.append(max(sent.values(), default=0.0) * _NS)
        receive_phase.append(max(received.values(), default=0.0) * _NS)
    hop_e = fig.hop_energy

    lif_neurons = sum(sizes[l.neuron] for l in layers)
    n_msgs = [sum(messages[g][t] for g in groups) for t in range(steps)]
    per_step = {
        "synapse": [v * _PJ for v in perf["synapse_energy"]],
        "dendrite": [v * _PJ for v in perf["dendrite_energy"]],
        "soma_access": [lif_neurons * fig.access_energy] * steps,
        "soma_update": [sum(updated[l.neuron][t] for l in layers) * fig.update_energy for t in range(steps)],
        "soma_spike_out": [sum(spikes[l.neuron][t] for l in layers) * fig.spike_out_energy for t in range(steps)],
        "message_out": [n * fig.message_out_energy for n in n_msgs],
        "message_in": [n * fig.message_in_energy for n in n_msgs],
        "hops_ew": [hops["east"][t] * hop_e["east"] + hops["west"][t] * hop_e["west"] for t in range(steps)],
        "hops_ns": [hops["north"][t] * hop_e["north"] + hops["south"][t] * hop_e["south"] for t in range(steps)],
    }
    # the rebuilt parts must add up to SANA-FE's own categories, step by step
    for t in range(steps):
        soma = per_step["soma_access"][t] + per_step["soma_update"][t] + per_step["soma_spike_out"][t]
        network = per_step["message_out"][t] + per_step["message_in"][t] + per_step["hops_ew"][t] + \
            per_step["hops_ns"][t]
        total = sum(per_step[k][t] for k in ENERGY_UNITS)
        checks = {"soma": (soma, perf["soma_energy"][t]), "network": (network, perf["network_energy"][t]),
                  "total": (total, perf["total_energy"][t])}
        for name, (mine, theirs) in checks.items():
            if not _close(mine, theirs * _PJ):
                raise SanafeHarnessError(f"step {t}: rebuilt {name} energy {mine:.3f} pJ != SANA-FE's "
                                         f"{theirs * _PJ:.3f} pJ")
        syn_events = sum(synaptic_events[l.synapse][t] for l in layers)
        if syn_events != perf["spikes"][t]:
            raise SanafeHarnessError(f"step {t}: per-layer synaptic events {syn_events} != SANA-FE's "
                                     f"{perf['spikes'][t]}")
        lif_updated = perf["updated"][t] - spikes[input_name][t]  # input neurons count as updated when firing
        if sum(updated[l.neuron][t] for l in layers) != lif_updated:
            raise SanafeHarnessError(f"step {t}: per-layer updated neurons do not add up to SANA-FE's count")

    energy = {k: float(sum(v)) for k, v in per_step.items()}
    energy["total"] = float(sum(perf["total_energy"])) * _PJ
    reported = {k: float(sum(perf[f"{k}_energy"])) * _PJ for k in ("synapse", "dendrite", "soma", "network",
                                                                  "total")}
    tiles = len({c // fig.cores_per_tile for cores in core_of.values() for c in cores})
    return SanafeResult(
        steps=steps, mode=mode, timing_model=timing_model, energy_pj=energy,
        energy_per_step_pj={k: tuple(v) for k, v in per_step.items()}, energy_reported_pj=reported,
        latency_per_step_ns=tuple(v * _NS for v in perf["sim_time"]), sync_ns=fig.sync_ns(tiles),
        neuron_phase_max_ns=tuple(neuron_phase), receive_phase_max_ns=tuple(receive_phase),
        spikes=spikes, synaptic_events=synaptic_events, neurons_updated=updated,
        neurons_mapped={l.neuron: sizes[l.neuron] for l in layers},
        messages={g: tuple(v) for g, v in messages.items()}, hops={d: tuple(v) for d, v in hops.items()},
        cores={}, sanafe_cores={g: tuple(sorted(set(c))) for g, c in core_of.items()}, mapped_tiles=tiles,
        input_share_pj={"message_out": input_msgs * fig.message_out_energy,
                        "hops": sum(input_hops[d] * hop_e[d] for d in input_hops)},
        reference_spikes={n: tuple(int(v) for v in s.sum(1)) for n, s in ours.items()}, figures=fig)


__all__ = ["run_sanafe", "chain_layers", "SanafeResult", "LoihiFigures", "SanafeHarnessError", "ENERGY_UNITS"]
