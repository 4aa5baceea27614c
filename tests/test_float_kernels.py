"""The float SpikingJelly neurons' fast kernel (``sim/kernels/float_neurons.py``) against their reference
(``LIF.simulate``): the same float32 bits (signs of zero and NaNs included) for every field combination; the
max-pool's (``sim/kernels/pool.py``) against ``torch.max_pool2d`` on every window geometry; and a zoo model's
float graph gives the same outputs and traces with and without them."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from snncompile.frontend import export
from snncompile.ir import interpret
from snncompile.ir.interpret import Traces, reference
from snncompile.ir.ops import LIF, MaxPool2d, TernaryLIF
from snncompile.sim import run_graph
from snncompile.sim.dataset import graph_feeds
from snncompile.sim.kernels import KERNELS
from snncompile.sim.kernels.float_neurons import float_neuron
from snncompile.sim.kernels.pool import max_pool
from snncompile.zoo.registry import find_entry, load_entry_checkpoint


def _bits(t: torch.Tensor) -> torch.Tensor:
    """float32 values as their bits (-0.0 apart from 0.0); a bool trace as it is."""
    return t if t.dtype == torch.bool else t.contiguous().view(torch.int32)


def _inputs() -> torch.Tensor:
    x = torch.randn(6, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 2
    x[1, 0, 0, :3] = torch.tensor([-0.0, float("nan"), float("inf")])  # edge values take the same path
    x[2, 1, 1, :2] = torch.tensor([float("-inf"), 0.0])
    x[3, 2] = 1.0  # exactly at a threshold of 1 after a reset
    return x


def _per_neuron(low: float, high: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (4, 5)).astype(np.float32)


# (v_rest, v_reset): +0.0 takes the kernel's short cuts, -0.0 and others the full operations
RESTS = ((0.0, 0.0), (-0.0, -0.0), (0.3, -0.5))
CASES = [(cls, encoding, decay, *rests, cmp, reset, per_neuron)
         for cls, encoding, decay, rests, cmp, reset, per_neuron in itertools.product(
             (LIF, TernaryLIF), ("divide_by_tau", "multiply_by_rate", "none"), (True, False), RESTS, (">=", ">"),
             ("hard", "subtract"), (False, True))
         if not (cls is TernaryLIF and reset == "subtract")]


def test_float_neuron_kernel_equals_the_reference_bit_for_bit():
    x = _inputs()
    for case in CASES:
        cls, encoding, decay_input, v_rest, v_reset, cmp, reset, per_neuron = case
        rate = encoding == "multiply_by_rate"
        leak = ((_per_neuron(0.1, 0.9, 2) if rate else _per_neuron(1.1, 3.0, 2)) if per_neuron
                else (0.5 if rate else 2.0))
        op = cls(v_threshold=_per_neuron(0.5, 1.5, 1) if per_neuron else 1.0, leak=leak, leak_encoding=encoding,
                 decay_input=decay_input, v_rest=v_rest, v_reset=v_reset, threshold_cmp=cmp, reset=reset)
        for states, delay in ((Traces.NONE, 0), (Traces.STATES, 0), (Traces.NONZERO, 1), (Traces.NONE, 2)):
            expected, fast = reference(op, [x], delay, states), float_neuron(op, [x], delay, states)
            assert len(fast[1]) == len(expected[1])
            for a, b in zip((expected[0], *expected[1]), (fast[0], *fast[1])):
                assert a.dtype == b.dtype and torch.equal(_bits(a), _bits(b)), (case, states, delay)


def test_the_kernel_fires_and_resets_as_the_equations_say():
    """Hand-computed: tau 2, threshold 1, hard reset to 0: h = v + (x - v) / 2."""
    op = LIF(v_threshold=1.0, leak=2.0)
    x = torch.tensor([1.5, 1.5, 0.5, 3.0]).reshape(4, 1, 1)
    spikes, (v,) = float_neuron(op, [x], 0, Traces.STATES)
    # h: 0.75 (no spike), 1.125 (spike, v = 0), 0.25, 1.625 (spike)
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v.flatten().tolist() == [0.75, 0.0, 0.25, 0.0]


def test_other_dtypes_and_subclasses_take_the_reference():
    op = LIF(v_threshold=1.0, leak=2.0)
    x = torch.rand(3, 2, 4, dtype=torch.float64) * 3
    assert torch.equal(float_neuron(op, [x], 0, Traces.NONE)[0], reference(op, [x], 0, Traces.NONE)[0])
    assert KERNELS[LIF] is float_neuron and KERNELS[TernaryLIF] is float_neuron


def test_max_pool_kernel_equals_the_reference_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3, 2, 4, 9, 8, generator=g)
    inputs = {"real": real, "spikes": (real > 0.5).float(), "integers": torch.randint(-9, 9, (3, 2, 4, 9, 8)),
              "ties of zeros": torch.where(real > 0, 0.0, -0.0), "nan": real.clone().index_put_((
                  torch.tensor([1]), torch.tensor([0]), torch.tensor([2]), torch.tensor([3])), torch.tensor(
                      float("nan"))), "half": real.to(torch.float16)}
    for kernel, stride, padding in itertools.product(((3, 3), (2, 3), (1, 1)), ((2, 2), (1, 1), (1, 2)),
                                                     ((1, 1), (0, 0), (1, 0))):
        if any(2 * p > k for p, k in zip(padding, kernel)):
            continue
        op = MaxPool2d(kernel=kernel, stride=stride, padding=padding)
        for what, x in inputs.items():
            for delay in (0, 1):
                expected = reference(op, [x], delay, Traces.NONE)[0]
                fast, traces = max_pool(op, [x], delay, Traces.NONE)
                assert traces == () and fast.dtype == expected.dtype and fast.is_contiguous()
                assert torch.equal(fast.contiguous().view(torch.uint8), expected.contiguous().view(torch.uint8)), (
                    what, kernel, stride, padding, delay)


def test_max_pool_kernel_takes_window_maxima_by_hand():
    """A 3x3 image, 3x3 windows, stride 2, padding 1: four windows, each the max of the inputs it covers."""
    x = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0], [7.0, -8.0, -9.0]]).reshape(1, 1, 1, 3, 3)
    y, _ = max_pool(MaxPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), [x], 0, Traces.NONE)
    assert y.flatten().tolist() == [5.0, 5.0, 7.0, 5.0]
    assert KERNELS[MaxPool2d] is max_pool


def test_a_zoo_float_graph_runs_identically_with_and_without_the_kernel():
    entry = find_entry("statten-event-digits")
    graph = export(load_entry_checkpoint(entry, None).model)
    x = torch.poisson(torch.full((2, graph.time_steps, 2, 16, 16), 0.3), generator=torch.Generator().manual_seed(3))
    feeds = graph_feeds(graph, x)
    fast = run_graph(graph, feeds, keep="all")
    plain = interpret.run_graph(graph, feeds, keep="all", kernels={k: v for k, v in KERNELS.items()
                                                                    if v not in (float_neuron, max_pool)})
    assert any(isinstance(graph.op(n), LIF) for n in graph.nodes)
    assert any(isinstance(graph.op(n), MaxPool2d) for n in graph.nodes)
    assert fast.keys() == plain.keys()
    for name in fast:
        assert torch.equal(fast[name], plain[name]), name
