"""Writing a netx plan as lava-dl netx HDF5 (the layout slayer writes and ``netx.utils.NetDict`` reads, spec
lava_loihi.md §5.3), and reading back the attributes snncompile adds to it.

h5py only (imported when used): Lava's compiler also executes this file on its own (a sibling of the backend's
Process definitions), so absolute imports, no side effects at import.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snncompile.backends.lava.netx import NetxExportError, NetxPlan, plan_netx
from snncompile.ir import Graph

ATTR = "snncompile."                     # prefix of the root attributes snncompile writes (netx ignores them)


@dataclass(frozen=True, eq=False)
class NetxExport:
    """What :func:`write_netx` wrote: the file, the plan it followed, and each HDF5 layer group's contents
    (``layer/<i>``, in order: the input, then an optional 'flatten' and the block of every layer)."""

    path: Path
    plan: NetxPlan
    groups: tuple[dict, ...]


def write_netx(graph: Graph, path: str | Path, *, feed: str | None = None, max_layers: int | None = None
               ) -> NetxExport:
    """Write the netx-expressible chain of ``graph`` (:func:`plan_netx`, from ``feed`` where given) to the HDF5
    file ``path``, loadable
    with ``lava.lib.dl.netx.hdf5.Network(net_config=path)``; returns what was written. Raises
    :class:`NetxExportError` (every node with its reason) when netx can express no layer.

    Layout as slayer writes it (spec lava_loihi.md §5.3): ``layer/0`` the input (``type 'input'``, ``shape``
    in CHW order; no neuron, so netx only takes the input shape from it, except where the feed drives a neuron
    directly: then its ``neuron`` makes it netx's Input block, whose neuron ``run_netx`` feeds), then per
    layer an optional
    ``flatten`` and a ``dense`` (``shape [out]``, ``inFeatures``, ``outFeatures``, ``weight [out, in]``) or
    ``conv`` (``shape [C, H, W]``, ``inChannels``, ``outChannels``, ``kernelSize``, ``stride``, ``padding``,
    ``dilation`` as (rows, columns), ``groups``, ``weight [C_out, C_in/g, kH, kW]``: netx flips and transposes
    it into Lava's layout) with ``neuron`` (``type 'CUBA'``, ``iDecay``, ``vDecay``, ``vThMant``, ``refDelay``,
    ``gradedSpike``) and an optional ``bias`` (the neuron's mantissa; per channel or per neuron in WHC order).
    Weights are int32. Root attributes ``snncompile.*`` record the feed, the input message bits, the steps,
    whether and from which step the blocks restart, and the neuron node of every block (netx ignores them).
    """
    import h5py

    plan = plan_netx(graph, feed=feed, max_layers=max_layers)
    if not plan.layers:
        raise NetxExportError(plan.problems)
    path = Path(path)
    groups: list[dict] = [{"type": "input", "shape": np.array(plan.input_shape, dtype=np.int64)}]
    if plan.input_neuron:
        groups[0]["neuron"] = _cuba(plan.input_params)
    for layer in plan.layers:
        if layer.flatten:
            groups.append({"type": "flatten", "shape": np.array([int(np.prod(layer.in_shape))], dtype=np.int64)})
        neuron = _cuba(layer.neuron_params)
        group: dict = {"type": layer.kind, "shape": np.array(layer.shape, dtype=np.int64)}
        if layer.kind == "dense":
            group.update(inFeatures=np.int64(layer.weight.shape[1]), outFeatures=np.int64(layer.weight.shape[0]))
        else:
            g = layer.geometry
            group.update(inChannels=np.int64(layer.weight.shape[1] * g["groups"]),
                         outChannels=np.int64(layer.weight.shape[0]),
                         kernelSize=np.array(layer.weight.shape[2:], dtype=np.int64),
                         stride=np.array(g["stride"], dtype=np.int64), padding=np.array(g["padding"], dtype=np.int64),
                         dilation=np.array(g["dilation"], dtype=np.int64), groups=np.int64(g["groups"]))
        group["weight"] = layer.weight.astype(np.int32)
        group["neuron"] = neuron
        if layer.bias is not None:
            bias = layer.bias
            if bias.ndim == 3:  # per neuron: netx wants the neuron's (W, H, C) layout
                bias = bias.transpose(2, 1, 0)
            elif bias.ndim == 0 and len(layer.shape) == 3:  # one value: write it per channel
                bias = np.full(layer.shape[0], int(bias))
            elif bias.ndim == 0:
                bias = np.full(layer.shape, int(bias))
            group["bias"] = np.ascontiguousarray(bias).astype(np.int32)
        groups.append(group)
    with h5py.File(path, "w") as f:
        root = f.create_group("layer")
        for i, group in enumerate(groups):
            _write_group(root.create_group(str(i)), group, top=True)
        f.attrs[ATTR + "feed"] = plan.feed
        f.attrs[ATTR + "input_message_bits"] = plan.input_message_bits
        f.attrs[ATTR + "steps"] = plan.steps
        f.attrs[ATTR + "restart"] = int(plan.restart)
        f.attrs[ATTR + "reset_offset"] = plan.reset_offset  # block k restarts at IR step offset + k
        f.attrs[ATTR + "neurons"] = json.dumps(list(plan.neurons))
    return NetxExport(path=path, plan=plan, groups=tuple(groups))


def _cuba(params) -> dict:
    return {"type": "CUBA", **{k: np.int64(v) for k, v in params.items()}, "gradedSpike": np.bool_(False)}


def _write_group(h, contents: dict, top: bool) -> None:
    for key, value in contents.items():
        if isinstance(value, dict):
            _write_group(h.create_group(key), value, top=False)
        elif key == "type":  # slayer: layer type (1,) |S10, neuron type a scalar string
            h.create_dataset(key, data=np.array([value.encode()], dtype="S10") if top else np.bytes_(value))
        else:
            h.create_dataset(key, data=value)


def file_attrs(path: Path) -> dict:
    """The root attributes of the HDF5 file ``path`` (byte strings decoded)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


__all__ = ["NetxExport", "write_netx", "file_attrs", "ATTR"]
