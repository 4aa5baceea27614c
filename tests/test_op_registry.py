"""The op registry is the one home of what every stage needs to know about an op type: a type that leaves a
declaration out, or declares a mapping its backend does not implement, fails here (it cannot land)."""
import dataclasses

import nir
import numpy as np
import pytest
import torch

from snncompile.ir import Graph, Node
from snncompile.ir.ops import OPS, family, ops_where
from snncompile.ir.ops import HeadChannelSum, HeadTokenMask
from snncompile.ir.ops import (LI, LIF, Add, BatchNorm, BlockLinearAttention, Conv2d, CubaLIF, Delay, Flatten, Input,
                               IntAdd, IntConv2d, IntDense, IntShift, KVOuterAccumulate, Linear, LoihiLIF,
                               LevelScores, LevelScoreValue, LevelThreshold, LoihiTernaryLIF, LUTAttention, MaxPool2d,
                               MultiLevelAttention, MultiLevelSpike, Mul, Output, QMAccumulate, Quantize, ReLU,
                               Repeat, Scale, ScoreLUT, ScoreValueAccumulate, SpikeColumnSum, SpikeMask, SpikeScores,
                               SumPool2d, TemporalWindow, TernaryLIF, TimeMean, TokenMean, TokenSum)
from snncompile.ir.ops import BlockSum, BorderPad, GradedRelay
from snncompile.ir.ops.support import (BACKEND_NAMES, LAVA_KEYS, NETX_KEYS, ONNX_KEYS, ROLES, STEPPINGS, WORK_KINDS,
                                       Backends, Refused)
from snncompile.ir.types import FLOAT32, SPIKE, TERNARY, TensorType, int_type

C, H, W, HEADS = 4, 3, 3, 2
N, D = H * W, C // HEADS
MAP, TOKENS, VEC = (C, H, W), (HEADS, N, N), (6,)
rng = np.random.default_rng(0)
neurons = np.ones(MAP, np.float32)

# One valid instance of every registered op type, with its input types: a new op type without an example here
# fails test_every_op_type_has_an_example, so every check below runs on it.
EXAMPLES = {
    Input: (Input(shape=MAP), []),
    Output: (Output(), [TensorType(MAP)]),
    Repeat: (Repeat(time_steps=4), [TensorType(MAP, time="static")]),
    TimeMean: (TimeMean(), [TensorType(VEC)]),
    Conv2d: (Conv2d(weight=rng.normal(size=(6, 2, 3, 3)).astype(np.float32), padding=(1, 1), groups=2),
             [TensorType(MAP, SPIKE)]),
    Linear: (Linear(weight=rng.normal(size=(5, 6)).astype(np.float32), bias=np.zeros(5, np.float32)),
             [TensorType(VEC, SPIKE)]),
    BatchNorm: (BatchNorm(weight=np.ones(C, np.float32), bias=np.zeros(C, np.float32),
                          running_mean=np.zeros(C, np.float32), running_var=np.ones(C, np.float32)),
                [TensorType(MAP)]),
    Add: (Add(), [TensorType(MAP), TensorType(MAP)]),
    Mul: (Mul(), [TensorType(MAP, SPIKE), TensorType(MAP, SPIKE)]),
    ReLU: (ReLU(), [TensorType(MAP)]),
    Scale: (Scale(scale=0.5), [TensorType(MAP)]),
    MaxPool2d: (MaxPool2d(), [TensorType(MAP)]),
    SumPool2d: (SumPool2d(kernel=(2, 2), stride=(1, 1)), [TensorType(MAP, SPIKE)]),
    Flatten: (Flatten(), [TensorType(MAP, SPIKE)]),
    TokenMean: (TokenMean(), [TensorType(MAP)]),
    BorderPad: (BorderPad(pad=1, value=np.arange(C, dtype=np.float32)), [TensorType(MAP)]),
    LIF: (LIF(), [TensorType(MAP)]),
    TernaryLIF: (TernaryLIF(), [TensorType(MAP)]),
    CubaLIF: (CubaLIF(**{k: neurons * v for k, v in dict(tau_syn=2, tau_mem=4, r=1, v_leak=0, v_threshold=1,
                                                           v_reset=0, w_in=1).items()}), [TensorType(MAP)]),
    LI: (LI(), [TensorType(MAP)]),
    SpikeColumnSum: (SpikeColumnSum(heads=HEADS, erode=True), [TensorType(MAP, SPIKE)] * 2),
    SpikeMask: (SpikeMask(heads=HEADS, erode=True), [TensorType(MAP, SPIKE), TensorType((C,), SPIKE)]),
    HeadChannelSum: (HeadChannelSum(heads=HEADS), [TensorType(MAP, SPIKE)]),
    HeadTokenMask: (HeadTokenMask(heads=HEADS), [TensorType(MAP, SPIKE), TensorType((HEADS, H, W), SPIKE)]),
    BlockLinearAttention: (BlockLinearAttention(heads=HEADS, block=2), [TensorType(MAP, SPIKE)] * 3),
    LUTAttention: (LUTAttention(heads=HEADS, table=np.ones((HEADS, D + 1), np.float32)),
                   [TensorType(MAP, SPIKE)] * 3),
    TemporalWindow: (TemporalWindow(weights=np.array([2, 1], np.int64)), [TensorType(MAP, SPIKE)]),
    IntDense: (IntDense(weight=rng.integers(-4, 4, size=(5, 6)) * 2, bias=np.arange(5)), [TensorType(VEC, SPIKE)]),
    IntConv2d: (IntConv2d(weight=rng.integers(-4, 4, size=(4, 2, 3, 3)) * 2, padding=(1, 1), groups=2),
                [TensorType(MAP, SPIKE)]),
    LoihiLIF: (LoihiLIF(current_decay=4096, voltage_decay=0, vth=10), [TensorType(MAP, int_type(16))]),
    LoihiTernaryLIF: (LoihiTernaryLIF(current_decay=4096, voltage_decay=0, vth_hi=10, vth_lo=-10),
                      [TensorType(MAP, int_type(16))]),
    Quantize: (Quantize(scale=0.25, bits=8), [TensorType(MAP)]),
    IntAdd: (IntAdd(), [TensorType(MAP, int_type(8)), TensorType(MAP, SPIKE)]),
    IntShift: (IntShift(shift=2), [TensorType(MAP, int_type(8))]),
    Delay: (Delay(delay=2), [TensorType(MAP, SPIKE)]),
    GradedRelay: (GradedRelay(), [TensorType(MAP, int_type(12))]),
    BlockSum: (BlockSum(blocks=2, shift=-1, bias=np.arange(2)), [TensorType(MAP, int_type(12))]),
    TokenSum: (TokenSum(), [TensorType(MAP, SPIKE)]),
    KVOuterAccumulate: (KVOuterAccumulate(heads=HEADS, block=2), [TensorType(MAP, SPIKE), TensorType(MAP, TERNARY)]),
    QMAccumulate: (QMAccumulate(heads=HEADS), [TensorType(MAP, SPIKE), TensorType((HEADS, D, D), int_type(8))]),
    SpikeScores: (SpikeScores(heads=HEADS), [TensorType(MAP, SPIKE)] * 2),
    ScoreLUT: (ScoreLUT(table=np.arange(HEADS * 8).reshape(HEADS, 8)),
               [TensorType(TOKENS, int_type(3, signed=False))]),
    ScoreValueAccumulate: (ScoreValueAccumulate(heads=HEADS),
                           [TensorType(TOKENS, int_type(4, signed=False)), TensorType(MAP, TERNARY)]),
    MultiLevelSpike: (MultiLevelSpike(), [TensorType(MAP)]),
    MultiLevelAttention: (MultiLevelAttention(heads=HEADS, scale=0.5), [TensorType(MAP)] * 2 + [TensorType((2 * C, H, W))]),
    LevelScores: (LevelScores(heads=HEADS), [TensorType(MAP, int_type(3, signed=False))] * 2),
    LevelScoreValue: (LevelScoreValue(heads=HEADS), [TensorType(TOKENS, int_type(6, signed=False)),
                                                     TensorType((2 * C, H, W), int_type(3, signed=False))]),
    LevelThreshold: (LevelThreshold(thresholds=np.array([-2, 1, 3, 7])), [TensorType(MAP, int_type(8))]),
}


def _output_type(op, in_types) -> TensorType:
    return op.infer(in_types)


def _values(t: TensorType, steps: int = 4, batch: int = 2) -> torch.Tensor:
    """Random values of type ``t`` (``[T, B, *shape]``; ``[B, *shape]`` if static)."""
    lead = (batch,) if t.time == "static" else (steps, batch)
    shape = (*lead, *t.shape)
    if t.dtype == SPIKE:
        return torch.from_numpy(rng.integers(0, 2, size=shape)).float()
    if t.dtype == TERNARY:
        return torch.from_numpy(rng.integers(-1, 2, size=shape)).float()
    if t.dtype.kind == "int":
        return torch.from_numpy(rng.integers(max(t.dtype.min, -8), min(t.dtype.max, 8) + 1, size=shape))
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


def test_every_op_type_has_an_example():
    assert set(EXAMPLES) == set(OPS)
    for op_type, (op, in_types) in EXAMPLES.items():
        assert type(op) is op_type
        assert not op.problems(), (op_type.__name__, op.problems())
        _output_type(op, in_types)


@pytest.mark.parametrize("op_type", OPS, ids=lambda t: t.__name__)
def test_declarations_are_complete(op_type):
    assert op_type.ROLE in ROLES
    assert op_type.STEPPING in STEPPINGS
    assert op_type.WORK in WORK_KINDS
    assert isinstance(op_type.DENDRITIC, bool) and isinstance(op_type.BIAS_PASSES, bool)
    assert isinstance(op_type.RELAYED, bool)
    assert isinstance(op_type.BACKENDS, Backends)
    for backend in BACKEND_NAMES:
        entry = op_type.BACKENDS.get(backend)
        assert isinstance(entry, (str, Refused)), (backend, entry)
    assert op_type.__doc__ and "Semantics" in op_type.__doc__, "the docstring states the semantics"


@pytest.mark.parametrize("op_type", OPS, ids=lambda t: t.__name__)
def test_backend_keys_are_known(op_type):
    b = op_type.BACKENDS
    assert isinstance(b.lava, Refused) or b.lava in LAVA_KEYS
    assert isinstance(b.onnx, Refused) or b.onnx in ONNX_KEYS
    assert isinstance(b.netx, Refused) or b.netx in NETX_KEYS
    assert isinstance(b.nir, Refused) or b.nir in ("folded", "dissolved") or isinstance(getattr(nir, b.nir, None), type)


def test_onnx_declarations_match_the_exporter():
    from snncompile.backends.onnx.functions import SPECS

    declared = {op.type_name() for op in OPS if op.BACKENDS.onnx == "function"}
    assert declared == set(SPECS)


@pytest.mark.parametrize("op_type", OPS, ids=lambda t: t.__name__)
def test_reads_give_each_inputs_receptive_field(op_type):
    op, in_types = EXAMPLES[op_type]
    out = _output_type(op, in_types)
    shapes = [t.shape for t in in_types]
    none = op.reads(np.zeros(out.shape, bool), shapes)
    every = op.reads(np.ones(out.shape, bool), shapes)
    assert [m.shape for m in every] == [tuple(s) for s in shapes]
    assert not any(m.any() for m in none), "no output element reads nothing"
    assert all(m.any() for m in every)
    # one output element reads a subset of what all of them read (the centre one: a border pad's border reads
    # nothing)
    one = np.zeros(out.shape, bool)
    one[tuple(n // 2 for n in out.shape)] = True
    for part, whole in zip(op.reads(one, shapes), every):
        assert part.any() and not (part & ~whole).any()


def test_reads_of_a_convolution_are_its_window():
    op, in_types = EXAMPLES[IntConv2d]
    out = np.zeros((4, 3, 3), bool)
    out[0, 0, 0] = True  # channel 0 is in group 0 (input channels 0, 1); the 3x3 window at (0, 0), padded
    (read,) = op.reads(out, [in_types[0].shape])
    expected = np.zeros(MAP, bool)
    expected[:2, :2, :2] = True
    assert np.array_equal(read, expected)


@pytest.mark.parametrize("op_type", ops_where(WORK="synaptic"), ids=lambda t: t.__name__)
def test_synapses_count_fan_out(op_type):
    op, in_types = EXAMPLES[op_type]
    shape = in_types[0].shape
    fan = op.fan_out(shape)
    assert fan.shape == (1, *shape)
    out = _output_type(op, in_types)
    # the fan-out of every element, summed, is the number of (output, non-zero weight) pairs
    weight = op.as_synapse(shape).weight if isinstance(op, BlockSum) else op.weight  # (its relayed connections)
    per_output = np.count_nonzero(weight.reshape(weight.shape[0], -1), axis=1)
    if len(out.shape) == 3:  # convolution: every output position's kernel, less the zero padding it reads
        assert fan.sum() <= per_output.sum() * out.shape[1] * out.shape[2]
    else:
        assert fan.sum() == per_output.sum() * int(np.prod(out.shape[:-1]))
    split = op.fan_out(shape, [np.arange(0, 3), np.arange(3, int(np.prod(out.shape)))])
    assert torch.equal(split.sum(0), fan[0])


@pytest.mark.parametrize("op_type", ops_where(WORK="attention"), ids=lambda t: t.__name__)
def test_accumulates_count_work_per_output_element(op_type):
    op, in_types = EXAMPLES[op_type]
    out = _output_type(op, in_types)
    args = [_values(t) for t in in_types]
    work = op.work(args)
    assert work.shape == (4, 2, *out.shape)
    assert (work >= 0).all() and work.dtype == torch.int64


def test_work_of_kv_outer_is_the_coincidences():
    op = KVOuterAccumulate(heads=1, block=1)
    k = torch.zeros(1, 1, 2, 1, 2)  # [T, B, C, Hs, Ws]: 2 channels, 2 tokens
    v = torch.zeros(1, 1, 2, 1, 2)
    k[0, 0, 0, 0, :] = 1   # K[:, i=0] on both tokens
    v[0, 0, 1, 0, 0] = 1   # V[n=0, j=1]
    assert op.work([k, v])[0, 0].tolist() == [[[0, 1], [0, 0]]]


@pytest.mark.parametrize("op_type", ops_where(WORK="neuron"), ids=lambda t: t.__name__)
def test_neurons_report_their_state(op_type):
    op, in_types = EXAMPLES[op_type]
    if not hasattr(op, "simulate"):  # only a compartment that keeps no state (a graded relay) has none to report
        assert op_type.STEPPING == "local"
        return
    traces = op.simulate(_values(in_types[0]))
    assert len(traces) >= 2 and all(t.shape == traces[0].shape for t in traces)


@pytest.mark.parametrize("op_type", OPS, ids=lambda t: t.__name__)
def test_scheduling_round_trips(op_type):
    op, _ = EXAMPLES[op_type]
    timed = op.scheduled(arrival=3, data_steps=4, run_steps=9, synapse_delay=1)
    back = timed.unscheduled(data_steps=4)
    assert back.delay == 0
    plain = op.unscheduled(data_steps=4)
    assert {f.name: getattr(back, f.name) for f in dataclasses.fields(back) if not isinstance(getattr(back, f.name), np.ndarray)} \
        == {f.name: getattr(plain, f.name) for f in dataclasses.fields(plain) if not isinstance(getattr(plain, f.name), np.ndarray)}


def test_scheduling_sets_absolute_time_fields():
    kv, _ = EXAMPLES[KVOuterAccumulate]
    assert (kv.scheduled(3, 4, 9, 1).delay, kv.scheduled(3, 4, 9, 1).block_offset) == (1, 3)
    dense, _ = EXAMPLES[IntDense]
    timed = dense.scheduled(3, 4, 9, 1)
    assert (timed.delay, timed.bias_start, timed.bias_steps) == (1, 3, 4)  # the bias acts in the 4 data steps
    assert (timed.unscheduled(4).bias_start, timed.unscheduled(4).bias_steps) == (0, 0)
    biased = LoihiLIF(current_decay=4096, voltage_decay=0, vth=10, bias_mant=3)
    assert biased.scheduled(3, 4, 9, 1).reset_at == 3 and biased.scheduled(3, 4, 9, 1).unscheduled(4).reset_at == 0
    assert EXAMPLES[LoihiLIF][0].scheduled(3, 4, 9, 1).reset_at == 0  # no bias: nothing charges before its data
    assert TimeMean().scheduled(5, 4, 9, 1).start == 5 and TimeMean().scheduled(5, 4, 9, 1).steps == 4
    assert Repeat(time_steps=4).scheduled(0, 4, 9, 1).time_steps == 9


def test_families_are_derived():
    assert set(family("neuron")) == {LIF, TernaryLIF, CubaLIF, LI, LoihiLIF, LoihiTernaryLIF, MultiLevelSpike}
    assert set(family("synapse")) == {Conv2d, Linear, IntDense, IntConv2d}
    assert set(ops_where(DENDRITIC=True)) == {IntAdd, IntShift, Delay, BlockSum}
    assert set(ops_where(RELAYED=True)) == {GradedRelay}
    assert set(ops_where(BIAS_PASSES=True)) == {MaxPool2d, Delay}
    with pytest.raises(ValueError, match="unknown role"):
        family("neurons")
    with pytest.raises(AttributeError, match="no trait"):
        ops_where(ROLES="neuron")


def test_a_refusal_needs_a_reason():
    with pytest.raises(ValueError):
        Refused("  ")


@pytest.mark.parametrize("op_type", OPS, ids=lambda t: t.__name__)
def test_example_runs(op_type):
    """Every example runs in a one-node graph with its declared semantics (so the examples stay valid)."""
    op, in_types = EXAMPLES[op_type]
    if op_type is Input:
        return
    nodes = {f"x{i}": Node(Input(shape=t.shape, dtype=t.dtype, time=t.time)) for i, t in enumerate(in_types)}
    nodes["op"] = Node(op, tuple(nodes))
    graph = Graph(nodes=nodes, outputs=("op",), time_steps=4).validate()
    from snncompile.ir import run_graph

    out = run_graph(graph, {f"x{i}": _values(t) for i, t in enumerate(in_types)})["op"]
    assert out.shape[-len(_output_type(op, in_types).shape):] == _output_type(op, in_types).shape


def _one_node_graph(op_type) -> Graph:
    op, in_types = EXAMPLES[op_type]
    nodes = {f"x{i}": Node(Input(shape=t.shape, dtype=t.dtype, time=t.time)) for i, t in enumerate(in_types)}
    nodes["op"] = Node(op, tuple(nodes))
    nodes["out"] = Node(Output(), ("op",))
    return Graph(nodes=nodes, outputs=("out",), time_steps=4).validate()


@pytest.mark.parametrize("op_type", [t for t in OPS if t not in (Input, Output)], ids=lambda t: t.__name__)
def test_nir_declarations_match_the_exporter(op_type):
    """An op type the NIR exporter maps is written as the NIR node it declares; a refused one is refused with
    its declared reason."""
    from snncompile.backends.nir_export import NIRExportError, nir_problems, to_nir

    graph = _one_node_graph(op_type)
    declared = op_type.BACKENDS.nir
    if isinstance(declared, Refused):
        assert nir_problems(graph)["op"] == declared.reason
        with pytest.raises(NIRExportError):
            to_nir(graph)
        return
    if op_type is BatchNorm:  # folded into the Conv2d/Linear before it
        graph = Graph(nodes={"x0": Node(Input(shape=(6,))), "lin": Node(EXAMPLES[Linear][0], ("x0",)),
                             "op": Node(BatchNorm(weight=np.ones(5, np.float32), bias=np.zeros(5, np.float32),
                                                  running_mean=np.zeros(5, np.float32),
                                                  running_var=np.ones(5, np.float32)), ("lin",)),
                             "out": Node(Output(), ("op",))}, outputs=("out",), time_steps=4).validate()
    written = {type(n).__name__ for n in to_nir(graph, fold_batchnorm=True).nodes.values()}
    if declared in ("folded", "dissolved"):
        assert written <= {"Input", "Output", "Affine", "Linear"}, written
    else:
        assert declared in written, (declared, written)


ON_CHIP = [t for t in OPS if not isinstance(t.BACKENDS.lava, Refused) and t.BACKENDS.lava != "host"]


@pytest.mark.parametrize("op_type", ON_CHIP, ids=lambda t: t.__name__)
def test_lava_steppers_reproduce_the_reference(op_type):
    """Each on-chip type's Lava mapping (the stepping its BACKENDS.lava key names, as the custom and fused
    processes run it) gives the reference run's values step for step, scheduled (delays, a bias and blocks
    starting at step 1) as on the chip."""
    from snncompile.backends.lava.models import stepper

    op, in_types = EXAMPLES[op_type]
    op = op.scheduled(arrival=1, data_steps=5, run_steps=6, synapse_delay=1)
    nodes = {f"x{i}": Node(Input(shape=t.shape, dtype=t.dtype)) for i, t in enumerate(in_types)}
    nodes["op"] = Node(op, tuple(nodes))
    graph = Graph(nodes=nodes, outputs=("op",), time_steps=6).validate()
    feeds = {f"x{i}": _values(TensorType(t.shape, t.dtype), steps=6) for i, t in enumerate(in_types)}
    from snncompile.ir import run_graph

    expected = run_graph(graph, feeds)["op"]
    stepping = stepper(op, 6)
    got = torch.stack([stepping.step(t, [feeds[f"x{i}"][t] for i in range(len(in_types))]) for t in range(6)])
    assert torch.equal(got.double(), expected.double())


@pytest.mark.parametrize("op", [MaxPool2d(kernel=(3, 3), stride=(2, 2), padding=(1, 1)), Delay(delay=2)],
                         ids=lambda op: op.type_name())
def test_a_bias_passes_the_ops_that_say_so(op):
    """BIAS_PASSES: a constant per channel added to the input comes out added to the output (the interpreter
    delays both alike), so a synapse's bias may move past the op."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-500, 500, (3, 2, 4, 6, 6), generator=g)
    b = torch.tensor([7, -300, 0, 45]).reshape(4, 1, 1)
    assert torch.equal(op.run(x + b), op.run(x) + b)
