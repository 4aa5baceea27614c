"""Intel's PilotNet LIF on our loihi2 target, beside Intel's Loihi 2 measurement, and the fit that calibrates
``targets/loihi2.toml`` from it.

Usage::

    .venv/bin/python benchmarks/loihi2_anchor.py                     # 2 synthetic frames; prints the comparison
    .venv/bin/python benchmarks/loihi2_anchor.py --samples 4 --json anchor.json

Intel's measurement (``shared/data/netx/README.md``: lava-dl's ``pilotnet_snn/benchmark.ipynb``, one Loihi 2
chip): ``netx.hdf5.Network(pilotnet_lif.net, reset_interval=16, reset_offset=3)``, frames streamed one per 16
steps, each block restarting when its sample's data arrive: 74 cores, 152.8 us per step (408.9 inferences/s),
0.232 W static per chip, 1.094 mJ dynamic and 1.661 mJ total per inference.

Ours: the file read with :func:`~snncompile.frontend.netx_import.read_netx` with ``reset_offset=0`` (every block
restarts at its data's arrival: one sample of Intel's pipelined stream; the graph equals netx in Lava step for
step, ``tests/test_netx_import.py``), placed with :func:`~snncompile.backends.placement.place` on ``loihi2``, and
run on synthetic frames (no PilotNet data ship here: smooth random images, each pixel in [0, 1], through the
file's input transform ``int(2 * 40 * x - 40 + 36)``, held for the 16 steps as Intel's encoder holds a frame in
the input neurons' current). Counts per core are exact (:func:`~snncompile.report.cores.core_activity`).

Per inference in a pipelined stream, every block works on one sample during its own 16-step window (from its
latency on); the steps before (its bias alone) and after (draining) belong to other samples. So:

- **energy per inference**: each core's counts inside its block's window, priced
  (:func:`~snncompile.report.cost.price` and the latency model's hop terms), plus static power over 16 steps;
- **time per step**: the steps where every block is inside its window (latency ``9 .. 15``): slowest core plus
  barrier (:func:`~snncompile.report.latency.estimate_latency`), averaged; 16 of them per inference.

The fit (``--fit``): Loihi 1's Table 2 per-event energies (the figures ``loihi2.toml`` held as proxies, and
``loihi1.toml`` still holds) scaled by one factor so that our dynamic energy per inference equals Intel's; their
per-event times scaled by one factor so that our time per step equals Intel's. One network and synthetic
frames fit two numbers, no more: what each calibrated figure means, and what is left, is in
``targets/README.md`` ("Loihi 2 calibration").
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PILOTNET = ROOT.parent / "shared" / "data" / "netx" / "pilotnet_lif.net"

#: shared/data/netx/README.md: Intel's Loihi 2 measurement of PilotNet LIF
INTEL = {"cores": 74, "cores_per_block": [13, 25, 13, 3, 3, 2, 12, 1, 1, 1], "inferences_per_s": 408.91,
         "steps_per_inference": 16, "step_us": 152.8, "total_w": 0.679234, "static_w": 0.232078,
         "dynamic_w": 0.447156, "total_mj": 1.661103, "dynamic_mj": 1.093544}
#: the per-event figures Loihi 1's Table 2 gives, which one factor each scales to Loihi 2's measurement
ENERGY_FIGURES = ("synaptic_op_energy", "neuron_update_energy_active", "neuron_update_energy_inactive",
                  "spike_energy_within_tile", "tile_hop_energy_ew", "tile_hop_energy_ns")
TIME_FIGURES = ("synaptic_op_time", "neuron_update_time_active", "neuron_update_time_inactive",
                "spike_latency_within_tile")


def synthetic_frames(samples: int, steps: int, weight: int, bias: int, seed: int = 0) -> torch.Tensor:
    """``[steps, samples, 3, 66, 200]`` int64: smooth random images (9 x 26 noise, bilinear) through netx's input
    transform ``int(2 * weight * x - weight + bias)`` (toward zero, as numpy's ``astype``), held every step."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(samples, 3, 9, 26, generator=gen)
    image = torch.nn.functional.interpolate(low, size=(66, 200), mode="bilinear", align_corners=False).clamp(0, 1)
    frame = (2 * weight * image.double() - weight + bias).to(torch.int64)
    return frame.unsqueeze(0).expand(steps, *frame.shape).contiguous()


def windowed(cores, placement, graph, data_steps: int):
    """``cores`` with every count outside its block's data window (its latency .. + data_steps) zeroed."""
    from snncompile.ir.timing import latencies
    from snncompile.report.cores import COUNTS, CoreActivity

    latency = latencies(graph)
    node = {c.core: c.node for c in placement.cores}
    mask = np.zeros(cores.synaptic_ops.shape[:2])
    for row, core in enumerate(cores.cores):
        start = latency[node[core]]
        mask[row, start:start + data_steps] = 1
    return CoreActivity(cores.cores, *(getattr(cores, k) * mask[:, :, None] for k in COUNTS))


def anchor(samples: int = 2, target: str = "loihi2", fit_from: str = "loihi1") -> dict:
    """Our figures for PilotNet LIF on ``target`` beside Intel's, and the one-factor fits of ``fit_from``'s
    per-event energies and times to Intel's dynamic energy and step time (see the module docstring)."""
    from snncompile.backends.placement import place
    from snncompile.frontend.netx_import import read_netx
    from snncompile.ir.ops import LoihiLIF
    from snncompile.report import core_activity, estimate_latency, trace_run
    from snncompile.report.cost import price
    from snncompile.report.latency import RECEIVE, SEND
    from snncompile.targets import load_target

    graph = read_netx(PILOTNET, reset_offset=0)
    options = graph.history[0].options
    steps = options["data_steps"]
    depth = graph.time_steps - steps
    chip, fit = load_target(target), load_target(fit_from)
    placement = place(graph, chip)
    blocks = Counter(c.node for c in placement.cores)
    x = synthetic_frames(samples, steps, options["input_weight"], options["input_bias"])
    trace = trace_run(graph, {"input": x})
    cores = windowed(core_activity(graph, placement, trace, chip), placement, graph, steps)
    neuron_rows = [i for i, core in enumerate(cores.cores)
                   if isinstance(graph.op(next(c.node for c in placement.cores if c.core == core)), LoihiLIF)]
    totals = {"ACs": int(cores.synaptic_ops.sum()), "neuron_updates_active": int(cores.neuron_updates_active.sum()),
              "neuron_updates_inactive": int(cores.neuron_updates_inactive.sum()),
              "spikes": int(cores.events_out[neuron_rows].sum())}

    def estimate(t) -> dict:
        latency = estimate_latency(cores, t)
        step_ns = float(np.mean(latency.step_ns[depth:steps]))  # every block inside its window
        dynamic = price(totals, samples, t).per_sample_pj
        dynamic.update({k: v for k, v in latency.energy_pj.items() if k != "static"})
        static_w = t.static_power_per_chip.value / 1e3 * placement.chips_used
        static_mj = static_w * steps * step_ns * 1e-9 * 1e3
        return {"target": t.name, "step_us": step_ns / 1e3, "barrier_us": latency.barrier_ns / 1e3,
                "inferences_per_s": 1e9 / (steps * step_ns), "dynamic_mj": sum(dynamic.values()) / 1e9,
                "dynamic_terms_mj": {k: v / 1e9 for k, v in dynamic.items()}, "static_w": static_w,
                "static_mj": static_mj, "total_mj": sum(dynamic.values()) / 1e9 + static_mj,
                "figures": {k: {"value": getattr(t, k).value, "status": getattr(t, k).status}
                            for k in (*ENERGY_FIGURES, *TIME_FIGURES, "static_power_per_chip")}}

    ours, proxy = estimate(chip), estimate(fit)
    # the time fit: step = k * (slowest core's busy time with fit_from's times) + barrier
    busy_proxy = (proxy["step_us"] - proxy["barrier_us"])
    time_scale = (INTEL["step_us"] - ours["barrier_us"]) / busy_proxy
    energy_scale = INTEL["dynamic_mj"] / proxy["dynamic_mj"]
    return {
        "network": str(PILOTNET.name), "samples": samples, "data_steps": steps, "run_steps": graph.time_steps,
        "cores": placement.cores_used, "chips": placement.chips_used,
        "cores_per_block": {n: blocks[n] for n in graph.nodes if n in blocks},
        "counts_per_inference": {k: v / samples for k, v in totals.items()},
        "intel": INTEL, "ours": ours, "with_" + fit_from: proxy,
        "fit": {"from": fit_from, "energy_scale": energy_scale, "time_scale": time_scale,
                "energies_pj": {k: getattr(fit, k).value * energy_scale for k in ENERGY_FIGURES},
                "times_ns": {k: getattr(fit, k).value * time_scale for k in TIME_FIGURES},
                "receive_terms": sorted(RECEIVE), "send_terms": sorted(SEND)},
    }


def _table(result: dict) -> str:
    intel, ours, proxy = result["intel"], result["ours"], result["with_" + result["fit"]["from"]]
    rows = [("cores", intel["cores"], result["cores"], result["cores"]),
            ("time per step (us)", intel["step_us"], ours["step_us"], proxy["step_us"]),
            ("inferences/s", intel["inferences_per_s"], ours["inferences_per_s"], proxy["inferences_per_s"]),
            ("static power (W)", intel["static_w"], ours["static_w"], proxy["static_w"]),
            ("dynamic energy/inference (mJ)", intel["dynamic_mj"], ours["dynamic_mj"], proxy["dynamic_mj"]),
            ("total energy/inference (mJ)", intel["total_mj"], ours["total_mj"], proxy["total_mj"])]
    head = f"{'PilotNet LIF, per inference':32s} {'Intel Loihi 2':>14s} {ours['target']:>14s} {proxy['target']:>14s}"
    lines = [head, "-" * len(head)] + [f"{name:32s} {a:14.4g} {b:14.4g} {c:14.4g}" for name, a, b, c in rows]
    lines.append(f"cores per block: Intel {intel['cores_per_block']}, ours {list(result['cores_per_block'].values())}"
                 f" ({', '.join(result['cores_per_block'])})")
    fit = result["fit"]
    lines.append(f"fit from {fit['from']}: energies x {fit['energy_scale']:.4f}, times x {fit['time_scale']:.4f}")
    lines += [f"  {k} = {v:.4g} pJ" for k, v in fit["energies_pj"].items()]
    lines += [f"  {k} = {v:.4g} ns" for k, v in fit["times_ns"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--fit-from", default="loihi1", help="target whose per-event figures the fit scales")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = anchor(args.samples, args.target, args.fit_from)
    print(_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
