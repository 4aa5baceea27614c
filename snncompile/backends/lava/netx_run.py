"""Running a netx HDF5 network in Lava (``netx.hdf5.Network``, ``fixed_pt``), one fresh runtime per sample, in
an isolated Lava session (:mod:`snncompile.backends.lava.session`): nothing of it outlives the call.

Importing this module does not import Lava (:func:`run_netx` does); Lava's compiler also executes this file
on its own (a sibling of the backend's Process definitions), so absolute imports, no side effects at import.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from snncompile.backends.lava.netx_hdf5 import ATTR, file_attrs
from snncompile.backends.lava.session import (LavaBackendError, LavaTimeoutError, fixed_pt_config, import_lava,
                                              run_isolated, stopped)


class NetxRunError(RuntimeError):
    """The Lava run of a netx network failed or timed out (its processes were killed); its ``__cause__`` is
    the error of :func:`snncompile.backends.lava.session.run_isolated`. ``worker_pid``: the worker process,
    whose process group held every Lava process of the run; ``segments``: the shared-memory files those
    processes held when they were killed (unlinked since)."""

    def __init__(self, message: str, worker_pid: int | None = None, segments: frozenset[str] = frozenset()):
        self.worker_pid = worker_pid
        self.segments = segments
        super().__init__(message)


@dataclass(frozen=True, eq=False)
class NetxRun:
    """Spikes of every netx block, ``[B, T, *shape]`` int8 in IR layout, and how long things took (seconds)."""

    spikes: tuple[np.ndarray, ...]
    neurons: tuple[str, ...]              # the IR neuron of each block (from the file's attributes)
    timings: Mapping[str, object]
    worker_pid: int                       # the child process (and process group) the runs happened in
    stragglers: int = 0                   # processes of that group still alive after the run (then killed)
    output_voltage: np.ndarray | None = None  # [B, T, *shape] int64: the last block's v, where it was asked for


def run_netx(path: str | Path, frames: np.ndarray, *, input_message_bits: int | None = None,
             timeout: float = 600.0, preload: bool = True, output_voltage: bool = False,
             reset_offset: int | None = None) -> NetxRun:
    """Run the netx network in ``path`` on each sample of ``frames`` (``[B, T, *input shape]`` integers, IR
    layout) in Lava's ``fixed_pt`` simulator for ``T`` steps; return every block's spikes.

    Per sample: ``netx.hdf5.Network(net_config=path, input_message_bits=...)`` (default: the file's
    ``snncompile.input_message_bits``; with the file's ``snncompile.restart``, its neurons restart when their
    data arrive: ``reset_interval``, ``reset_offset`` the file's ``snncompile.reset_offset``), a
    ``lava.proc.io.source.RingBuffer`` of the frames (transposed to
    Lava's (W, H, C) or flattened in C, H, W order, as the network's input port wants) into ``net.inp``, an
    ``Extractor`` on every block's output, ``net.run(RunSteps(T), Loihi2SimCfg(select_tag="fixed_pt"))``, then
    ``net.stop()``: a fresh runtime per sample, so every sample starts from zero state. Where the first block is
    netx's ``Input`` block (a neuron without a synapse, whose own input port netx leaves unconnected), the frames
    go into its neuron's ``a_in`` instead, as graded values (Intel's PilotNet tutorial feeds it so).
    ``output_voltage``: also probe the last block's voltage ``v`` every step (``NetxRun.output_voltage``; a
    ``Monitor``, which slows every step). ``reset_offset``: build the network with netx's
    ``reset_interval=T + 1, reset_offset=reset_offset`` (one restart of each block in the run), overriding the
    file's ``snncompile.restart``.

    All of it happens in :func:`snncompile.backends.lava.session.run_isolated`: a forked child process that
    leads its own process group; the call waits at most ``timeout`` seconds, then kills the whole group
    (Lava's processes included), unlinks the shared-memory segments they held, and raises
    :class:`NetxRunError` (as for a failed run or a dead worker; the session's error is its ``__cause__``).
    Any process of the group still alive 2 s after the worker answered is killed the same way
    (``NetxRun.stragglers`` counts them). ``preload``: import netx in this process first (once, with
    :func:`~snncompile.backends.lava.session.import_lava`, which leaves this process's multiprocessing start
    method as it was; later children fork with it loaded).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim < 3 or frames.dtype.kind not in "iub":
        raise ValueError(f"frames must be an integer array [B, T, *shape], got {frames.dtype} {frames.shape}")
    attrs = file_attrs(path)
    bits = int(attrs.get(ATTR + "input_message_bits", 0)) if input_message_bits is None else int(input_message_bits)
    neurons = tuple(json.loads(attrs.get(ATTR + "neurons", "[]")))
    if reset_offset is None and int(attrs.get(ATTR + "restart", 0)):
        reset_offset = int(attrs.get(ATTR + "reset_offset", 1))  # our export's: layer k at IR step offset + k
    reset = {} if reset_offset is None else {"reset_interval": frames.shape[1] + 1, "reset_offset": int(reset_offset)}
    t0 = time.perf_counter()
    if preload:
        import_lava("lava.lib.dl.netx.hdf5")
    timings: dict = {"preload_s": time.perf_counter() - t0}
    cleanup: dict = {}
    t0 = time.perf_counter()
    try:
        (spikes, voltage, child_timings), pgid = run_isolated(
            _run_samples, str(path), frames, bits, reset, output_voltage, timeout=timeout,
            what=f"the Lava run of {path}", grace=2.0, cleanup=cleanup)
    except LavaTimeoutError as e:
        raise NetxRunError(f"the Lava run of {path} did not finish within its timeout of {timeout:g} s; its "
                           "processes were killed", cleanup.get("pgid", e.pgid), cleanup.get("segments", frozenset())
                           ) from e
    except LavaBackendError as e:  # failed in the child (its traceback included), or the child died
        raise NetxRunError(str(e), cleanup.get("pgid"), cleanup.get("segments", frozenset())) from e
    timings.update(child_timings, total_s=time.perf_counter() - t0)
    return NetxRun(spikes=tuple(spikes), neurons=neurons, timings=timings, worker_pid=pgid,
                   stragglers=cleanup["stragglers"], output_voltage=voltage)


def _to_lava(x: np.ndarray, port_shape: tuple[int, ...]) -> np.ndarray:
    """IR frames ``[T, *shape]`` -> a RingBuffer's ``(*port_shape, T)`` int32."""
    T = x.shape[0]
    if len(port_shape) == 3 and x.ndim == 4:
        data = x.transpose(3, 2, 1, 0)  # (T, C, H, W) -> (W, H, C, T)
    else:
        data = x.reshape(T, -1).T  # row-major (C, H, W) flatten, as netx's flatten
    if tuple(data.shape[:-1]) != tuple(port_shape):
        raise ValueError(f"input frames {x.shape[1:]} do not fit the network's input port {port_shape}")
    return np.ascontiguousarray(data).astype(np.int32)


def _from_lava(y: np.ndarray, dtype=np.int8) -> np.ndarray:
    """Extracted ``(T, *port_shape)`` -> IR layout (``(W, H, C)`` -> ``(C, H, W)``) as ``dtype``."""
    if y.ndim == 4:
        y = y.transpose(0, 3, 2, 1)
    return np.ascontiguousarray(y).astype(dtype)


def _run_samples(path: str, frames: np.ndarray, bits: int, reset: dict, output_voltage: bool
                 ) -> tuple[list[np.ndarray], np.ndarray | None, dict]:
    """In the child (:func:`~snncompile.backends.lava.session.run_isolated`): one Lava run per sample; returns
    ``(spikes, last block's voltage or None, timings)``. ``reset``: netx's ``reset_interval`` and
    ``reset_offset`` (layer ``k``'s neurons restart at IR step ``reset_offset + k``; the file's
    ``snncompile.restart``: offset 1, see :mod:`.netx`), or nothing."""
    t0 = time.perf_counter()
    from lava.lib.dl.netx.blocks.process import Input as InputBlock
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    timings: dict = {"import_s": time.perf_counter() - t0, "samples": []}
    per_layer: list[list[np.ndarray]] | None = None
    voltages: list[np.ndarray] = []
    steps = frames.shape[1]
    for sample in frames:
        t = {"build_s": 0.0}
        t0 = time.perf_counter()
        net = Network(net_config=path, input_message_bits=bits, **reset)
        port = net.layers[0].neuron.a_in if isinstance(net.layers[0], InputBlock) else net.inp
        source = RingBuffer(data=_to_lava(sample, tuple(port.shape)))
        source.s_out.connect(port)
        monitor = Monitor() if output_voltage else None
        if monitor is not None:
            monitor.probe(net.layers[-1].neuron.v, steps)
        extractors = []
        for layer in net.layers:
            ex = Extractor(shape=tuple(layer.out.shape), buffer_size=steps)
            layer.out.connect(ex.in_port)
            extractors.append(ex)
        t["build_s"] = time.perf_counter() - t0
        with stopped(net, t, "stop_s"):
            t0 = time.perf_counter()
            net.run(condition=RunSteps(num_steps=steps), run_cfg=fixed_pt_config())
            t["run_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = [_from_lava(np.stack([ex.receive() for _ in range(steps)])) for ex in extractors]
            if monitor is not None:
                v = monitor.get_data()[net.layers[-1].neuron.name]["v"]  # (T, *port shape)
                voltages.append(_from_lava(v.reshape(steps, *net.layers[-1].neuron.v.shape), np.int64))
            t["read_s"] = time.perf_counter() - t0
        # each block's synapse (netx's Input block has none) and neuron, the source, the extractors, the monitor
        t["lava_processes"] = (sum(1 + hasattr(b, "synapse") for b in net.layers) + 1 + len(extractors)
                               + (monitor is not None))
        timings["samples"].append(t)
        if per_layer is None:
            per_layer = [[] for _ in got]
        for acc, y in zip(per_layer, got):
            acc.append(y)
    return [np.stack(ys) for ys in (per_layer or [])], (np.stack(voltages) if voltages else None), timings


__all__ = ["NetxRun", "NetxRunError", "run_netx"]
