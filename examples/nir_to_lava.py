"""A NIR graph from another framework (Sinabs, Norse, snnTorch, Rockpool, ...) on Lava, spike for spike.

Imports a ``.nir`` file into the snncompile IR (``from_nir``), lowers it to Loihi's integer form
(``lower_to_loihi``, calibrated on generated input), runs a few samples of generated input events on Lava
(time-limited, always stopped) and checks every neuron layer of every sample against snncompile's integer
reference simulator (``run_graph``). Without a file it first writes a small demo network with the ``nir``
package: Affine -> LIF -> Affine -> LIF, time constants in seconds as Norse writes them (``dt = 1 ms``).

    python examples/nir_to_lava.py                                  # the demo network
    python examples/nir_to_lava.py ../shared/data/nir/cnn_sinabs.nir --time-steps 4

Neurons are imported with NIR's own spike rule (fire on ``v > threshold``, reset to ``v_reset``). Loihi's
neuron rests and resets at 0 and takes its input unscaled, so a subtractive reset (Sinabs' and snnTorch's
default), a nonzero ``v_leak`` or ``v_reset``, or an ``r`` other than 1 or ``tau/dt`` cannot be lowered
(``two_lif_neurons.nir`` and ``lif_rockpool.nir`` in ``shared/data/nir`` fail for these reasons); see
``docs/nir.md`` for each framework's rule. The compiled integer graph is written to ``--out-dir``
(``snncompile inspect`` shows it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nir
import numpy as np
import torch

from snncompile.backends.lava.runner import run_lava
from snncompile.frontend.nir_import import CONVENTIONS, from_nir
from snncompile.ir import io as ir_io
from snncompile.ir import run_graph
from snncompile.ir.ops import LoihiLIF
from snncompile.passes import lower_to_loihi

DEMO_DT = 1e-3  # the Euler step the demo network's time constants are written for


def write_demo_network(path: Path, inputs: int = 32, hidden: int = 64, outputs: int = 10, seed: int = 0) -> Path:
    """A 2-layer LIF network as a NIR file, with random weights strong enough that both layers fire."""
    rng = np.random.default_rng(seed)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 5e-3, np.float32), r=np.ones(n, np.float32),
                       v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32))

    def affine(n_out: int, n_in: int) -> nir.Affine:
        weight = rng.normal(1.0, 2.0, (n_out, n_in)) / np.sqrt(n_in)
        return nir.Affine(weight=weight.astype(np.float32), bias=np.zeros(n_out, np.float32))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([inputs])), "fc1": affine(hidden, inputs), "lif1": lif(hidden),
               "fc2": affine(outputs, hidden), "lif2": lif(outputs),
               "output": nir.Output(output_type=np.array([outputs]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")])
    nir.write(path, graph)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nir_file", nargs="?", type=Path, help="NIR graph to run (default: write the demo network)")
    parser.add_argument("--dt", type=float, default=None,
                        help="Euler step the graph was made with; NIR files carry none (default: the file's "
                             f"snncompile.dt, else 1; {DEMO_DT:g} for the demo network)")
    parser.add_argument("--convention", choices=sorted(CONVENTIONS), default="spec",
                        help="the rules of the framework that wrote the file (docs/nir.md)")
    parser.add_argument("--time-steps", type=int, default=16, help="input steps per sample")
    parser.add_argument("--samples", type=int, default=4, help="samples run on Lava, in one Lava run")
    parser.add_argument("--calibration", type=int, default=16, help="generated samples that set the input scale")
    parser.add_argument("--rate", type=float, default=0.3, help="mean input events per element and step (Poisson)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--granularity", choices=["per_op", "fused", "fused_model"], default="fused",
                        help="one Lava process per node, per block, or for the whole chip part")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before the Lava run is stopped")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/examples"))
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path, dt = args.nir_file, args.dt
    if path is None:
        path = write_demo_network(args.out_dir / "demo_lif.nir")
        dt = DEMO_DT if dt is None else dt
        print(f"wrote the demo network to {path}")

    graph = from_nir(path, time_steps=args.time_steps, dt=dt, convention=args.convention)
    (input_name,) = graph.inputs()
    shape = graph.op(input_name).shape
    events = torch.poisson(torch.full((args.time_steps, args.calibration + args.samples, *shape), args.rate),
                           generator=torch.Generator().manual_seed(args.seed))
    integer = lower_to_loihi(graph, {input_name: events[:, :args.calibration]})
    compiled = ir_io.save(integer, args.out_dir / f"{path.name.split('.')[0]}.loihi.snnir")

    feeds = {input_name: events[:, args.calibration:]}
    lava = run_lava(integer, feeds, granularity=args.granularity, timeout=args.timeout)
    reference = run_graph(integer, feeds, keep="all")
    neurons = [n for n in lava if isinstance(integer.op(n), LoihiLIF)]
    print(f"{path}: imported as {len(graph.nodes)} IR nodes, lowered to {len(integer.nodes)} integer nodes, "
          f"{integer.time_steps} Lava steps ({args.time_steps} input + pipeline latency)")
    identical = []
    for b in range(args.samples):
        same = all(torch.equal(lava[n][:, b], reference[n][:, b]) for n in lava)  # [steps, batch, ...]
        spikes = int(sum(lava[n][:, b].sum() for n in neurons))
        identical.append(same)
        print(f"  sample {b}: {spikes} spikes in {len(neurons)} neuron layers; Lava "
              f"{'identical to' if same else 'DIFFERS from'} the reference simulator")
    print(f"Lava ({args.granularity}) matched the reference on {sum(identical)}/{args.samples} samples")
    print(f"compiled integer graph: {compiled}")
    return {"nir_file": path, "compiled": compiled, "identical": identical,
            "spikes": {n: int(lava[n].sum()) for n in neurons}}


if __name__ == "__main__":
    main()
