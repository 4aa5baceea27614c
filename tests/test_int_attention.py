"""The integer attention nodes (``snncompile.ir.ops.int_attention``): hand-computed tiny cases, exact equality
with the float attention nodes on random spike, ternary and unsigned operands, proven ranges (sound on
random data, reached by a constructed worst case), narrowing, causality under the scheduler's delay, and
the messages of ``problems()`` and ``infer``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import SPIKE, TERNARY, Graph, Node, TensorType, int_type
from snncompile.ir.interval import Interval
from snncompile.ir.ops import (BlockLinearAttention, Input, KVOuterAccumulate, LUTAttention, Output, QMAccumulate,
                               ScoreLUT, ScoreValueAccumulate, SpikeScores, TypeMismatch)
from snncompile.ir.ops.int_attention import exact_matmul
from snncompile.ir.ops.quant import fit
from snncompile.sim import run_graph

UINT8 = int_type(8, signed=False)


def tokens(*steps) -> torch.Tensor:
    """One head's ``[N, d]`` matrices (one per step) as a ``[T, 1, d, 1, N]`` stream (channel j, token n)."""
    return torch.stack([torch.tensor(rows, dtype=torch.float32).T.reshape(1, -1, 1, len(rows)) for rows in steps])


def per_head(x: torch.Tensor, *shape) -> torch.Tensor:
    """A ``[T, 1, *shape]`` node output as the plain nested list of step ``t``'s matrix, per step."""
    return [step[0].reshape(*shape).tolist() for step in x]


# ------------------------------------------------------------------------------------------------
# hand-computed: one head, d = 2, two tokens
# ------------------------------------------------------------------------------------------------

Q0, K0, V0 = [[1, 0], [1, 1]], [[1, 1], [0, 1]], [[1, 0], [1, 1]]  # rows: tokens n, columns: channels j
K1, V1 = [[0, 1], [1, 0]], [[0, 1], [1, 0]]


def test_hand_computed_kv_qm_scores_lut_sv():
    q, k, v = tokens(Q0), tokens(K0), tokens(V0)
    # M[i, j] = sum_n K[n, i] V[n, j];  O = Q M;  A = Q K^T;  A V = O
    m = KVOuterAccumulate(heads=1).run(k, v)
    assert per_head(m, 2, 2) == [[[1, 0], [2, 1]]]
    assert per_head(QMAccumulate(heads=1).run(q, m), 2, 2) == [[[1, 3], [0, 1]]]  # [C, N]: channel-major
    a = SpikeScores(heads=1).run(q, k)
    assert per_head(a, 2, 2) == [[[1, 0], [2, 1]]]
    assert per_head(ScoreValueAccumulate(heads=1).run(a, v), 2, 2) == [[[1, 3], [0, 1]]]
    f = ScoreLUT(table=np.array([[-3, 5, 7]])).run(a)  # f(0) = -3, f(1) = 5, f(2) = 7
    assert per_head(f, 2, 2) == [[[5, -3], [7, 5]]]
    # f V: token 0: 5 V0 - 3 V1 = [2, -3]; token 1: 7 V0 + 5 V1 = [12, 5]
    assert per_head(ScoreValueAccumulate(heads=1).run(f, v), 2, 2) == [[[2, 12], [-3, 5]]]


def test_hand_computed_blocks_offset_and_signed_operands():
    k, v = tokens(K0, K1, K0, K1), tokens(V0, V1, V0, V1)
    # per step: M(K0, V0) = [[1, 0], [2, 1]], M(K1, V1) = [[1, 0], [0, 1]]
    assert per_head(KVOuterAccumulate(heads=1, block=2).run(k, v), 2, 2) == [[[2, 0], [2, 2]]] * 4
    # offset 1: step 0 forms no block; block [1, 2]; the last block [3] is cut short by the end
    assert per_head(KVOuterAccumulate(heads=1, block=2, block_offset=1).run(k, v), 2, 2) == [
        [[0, 0], [0, 0]], [[2, 0], [2, 2]], [[2, 0], [2, 2]], [[1, 0], [0, 1]]]
    # unsigned K, ternary V: M[0, 1] = 3 * -1 + 2 * 1 = -1, M[1, 1] = 0 * -1 + 5 * 1 = 5
    m = KVOuterAccumulate(heads=1).run(tokens([[3, 0], [2, 5]]), tokens([[1, -1], [0, 1]]))
    assert per_head(m, 2, 2) == [[[3, -1], [0, 5]]] and m.dtype == torch.int64


# ------------------------------------------------------------------------------------------------
# equal to the float attention nodes
# ------------------------------------------------------------------------------------------------

def operand(kind: str, shape, g: torch.Generator) -> torch.Tensor:
    if kind == "spike":
        return (torch.rand(shape, generator=g) < 0.4).float()
    if kind == "ternary":
        return torch.randint(-1, 2, shape, generator=g).float()
    return torch.randint(0, 256, shape, generator=g).float()  # uint8: A2OS2A's quantised K


SHAPE = (4, 3, 12, 2, 3)  # T, B, C, Hs, Ws


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("block", [1, 2, 4])
@pytest.mark.parametrize("k_kind, v_kind", [("spike", "spike"), ("uint8", "ternary"), ("ternary", "spike"),
                                            ("spike", "ternary")])
def test_q_kv_equals_block_linear_attention(heads, block, k_kind, v_kind):
    g = torch.Generator().manual_seed(heads * 100 + block)
    q, k, v = operand("spike", SHAPE, g), operand(k_kind, SHAPE, g), operand(v_kind, SHAPE, g)
    expected = BlockLinearAttention(heads=heads, block=block, scale=1.0).run(q, k, v)
    m = KVOuterAccumulate(heads=heads, block=block).run(k, v)
    assert torch.equal(QMAccumulate(heads=heads).run(q, m).float(), expected)


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("v_kind", ["spike", "ternary"])
def test_qk_v_equals_per_step_linear_attention_and_lut_attention(heads, v_kind):
    g = torch.Generator().manual_seed(heads)
    q, k, v = operand("spike", SHAPE, g), operand("spike", SHAPE, g), operand(v_kind, SHAPE, g)
    scores = SpikeScores(heads=heads).run(q, k)
    linear = BlockLinearAttention(heads=heads, scale=1.0, scale_position="out").run(q, k, v)
    assert torch.equal(ScoreValueAccumulate(heads=heads).run(scores, v).float(), linear)
    table = np.random.default_rng(heads).integers(-100, 100, (heads, 12 // heads + 1))
    expected = LUTAttention(heads=heads, table=table.astype(np.float32)).run(q, k, v)
    f = ScoreLUT(table=table).run(scores)
    assert torch.equal(ScoreValueAccumulate(heads=heads).run(f, v).float(), expected)


def test_exact_matmul_is_exact_beyond_float_precision():
    g = torch.Generator().manual_seed(0)
    for magnitude in (2 ** 6, 2 ** 20, 2 ** 40):  # partial sums below 2^24, below 2^53, beyond 2^53
        a = torch.randint(-magnitude, magnitude, (3, 5, 7), generator=g)
        b = torch.randint(-2 ** 10, 2 ** 10, (3, 7, 4), generator=g)
        assert torch.equal(exact_matmul(a, b), torch.matmul(a, b))  # int64 matmul: the exact reference


# ------------------------------------------------------------------------------------------------
# types and proven ranges
# ------------------------------------------------------------------------------------------------

def stream(dtype, *shape) -> TensorType:
    return TensorType(shape, dtype)


C, HS, WS, HEADS, BLOCK = 8, 2, 3, 2, 2  # d = 4, N = 6
N, D = HS * WS, C // HEADS


def graph_of(op, *input_types: TensorType) -> Graph:
    nodes = {f"x{i}": Node(Input(shape=t.shape, dtype=t.dtype)) for i, t in enumerate(input_types)}
    nodes["op"] = Node(op, tuple(nodes))
    nodes["out"] = Node(Output(), ("op",))
    return Graph(nodes, ("out",), time_steps=4).validate()


def check_range(op, input_types, feeds) -> tuple[Interval, torch.Tensor]:
    """Run ``op`` in a graph on ``feeds``; assert every value lies in its proven interval and its dtype."""
    graph = graph_of(op, *input_types)
    out_type = graph.types()["op"]
    proven = op.value_range([None] * len(input_types), list(input_types), out_type)
    y = run_graph(graph, {f"x{i}": x for i, x in enumerate(feeds)})["out"]
    assert y.dtype == torch.int64
    assert proven.lo <= int(y.min()) and int(y.max()) <= proven.hi
    assert proven.within(Interval.of_dtype(out_type.dtype))
    return proven, y


def full(value, *shape) -> torch.Tensor:
    return torch.full((4, 2, *shape), float(value))


def channels(value) -> torch.Tensor:
    return full(value, C, HS, WS)


def matrices(value, rows: int) -> torch.Tensor:  # [H, rows, rows] per step
    return full(value, HEADS, rows, rows)


SPIKES, TERNARIES = stream(SPIKE, C, HS, WS), stream(TERNARY, C, HS, WS)
CASES = {  # name: (op, input types, kinds of random feeds, worst-case feeds, the (lo, hi) they reach together)
    "kv spikes": (KVOuterAccumulate(heads=HEADS, block=BLOCK), [SPIKES, SPIKES], ["spike", "spike"],
                  [(channels(0), channels(1)), (channels(1), channels(1))], (0, BLOCK * N)),
    "kv uint8 x ternary": (KVOuterAccumulate(heads=HEADS, block=BLOCK), [stream(UINT8, C, HS, WS), TERNARIES],
                           ["uint8", "ternary"], [(channels(255), channels(-1)), (channels(255), channels(1))],
                           (-255 * BLOCK * N, 255 * BLOCK * N)),
    "qm": (QMAccumulate(heads=HEADS), [SPIKES, stream(int_type(6), HEADS, D, D)], ["spike", "m"],
           [(channels(1), matrices(-32, D)), (channels(1), matrices(31, D))], (-32 * D, 31 * D)),
    "scores": (SpikeScores(heads=HEADS), [SPIKES, SPIKES], ["spike", "spike"],
               [(channels(0), channels(1)), (channels(1), channels(1))], (0, D)),
    "lut": (ScoreLUT(table=np.array([[4, -7, 2, 9, 1], [0, 3, -2, 5, 8]])), [stream(int_type(3, False), HEADS, N, N)],
            ["score"], [(matrices(1, N),), (matrices(3, N),)], (-7, 9)),
    "sv": (ScoreValueAccumulate(heads=HEADS), [stream(int_type(5), HEADS, N, N), TERNARIES], ["s", "ternary"],
           [(matrices(-16, N), channels(1)), (matrices(-16, N), channels(-1))], (-16 * N, 16 * N)),
}


def random_feed(kind: str, t: TensorType, g: torch.Generator) -> torch.Tensor:
    shape = (4, 2, *t.shape)
    if kind in ("m", "s"):
        return torch.randint(int(t.dtype.min), int(t.dtype.max) + 1, shape, generator=g).float()
    if kind == "score":
        return torch.randint(0, 5, shape, generator=g).float()
    return operand(kind, shape, g)


@pytest.mark.parametrize("case", list(CASES))
def test_value_range_holds_on_random_data_and_is_reached(case):
    op, types, kinds, worst, (lo, hi) = CASES[case]
    g = torch.Generator().manual_seed(0)
    proven, _ = check_range(op, types, [random_feed(k, t, g) for k, t in zip(kinds, types)])
    assert (proven.lo, proven.hi) == (lo, hi)
    reached = [check_range(op, types, feeds)[1] for feeds in worst]
    assert min(int(y.min()) for y in reached) == lo and max(int(y.max()) for y in reached) == hi


def test_value_range_uses_proven_input_intervals():
    types = [stream(UINT8, C, HS, WS), stream(SPIKE, C, HS, WS)]
    kv = KVOuterAccumulate(heads=HEADS, block=BLOCK, block_offset=1)
    assert kv.value_range([Interval(2, 3), None], types, None) == Interval(0, 3 * BLOCK * N)  # 0: before the offset
    lut = ScoreLUT(table=np.array([[4, -7, 2, 9, 1]]))
    assert lut.value_range([Interval(2, 3)], [stream(int_type(3, False), 1, N, N)], None) == Interval(2, 9)


def test_types_match_the_float_nodes_integer_form():
    q = stream(SPIKE, C, HS, WS)
    m = KVOuterAccumulate(heads=HEADS, block=BLOCK).infer([q, q])
    assert m == stream(int_type(4, False), HEADS, D, D)  # 0 .. 12
    assert QMAccumulate(heads=HEADS).infer([q, m]) == BlockLinearAttention(heads=HEADS, block=BLOCK).infer([q] * 3)
    assert SpikeScores(heads=HEADS).infer([q, q]) == stream(int_type(3, False), HEADS, N, N)  # 0 .. 4
    ternary = stream(TERNARY, C, HS, WS)
    assert KVOuterAccumulate(heads=HEADS).infer([stream(UINT8, C, HS, WS), ternary]).dtype == int_type(12)
    assert KVOuterAccumulate(heads=HEADS, out_bits=8, overflow="wrap").infer([q, q]).dtype == int_type(8)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_out_bits_narrows_like_quant(overflow):
    g = torch.Generator().manual_seed(1)
    k, v = operand("uint8", SHAPE, g), operand("ternary", SHAPE, g)
    exact = KVOuterAccumulate(heads=3, block=2).run(k, v)
    narrow = KVOuterAccumulate(heads=3, block=2, out_bits=6, overflow=overflow).run(k, v)
    assert exact.abs().max() > 31 and torch.equal(narrow, fit(exact, 6, overflow))


def test_scheduler_delay_makes_the_block_sum_causal():
    """With ``delay = block - 1`` an output at step t never depends on inputs after t."""
    block, T = 3, 7
    g = torch.Generator().manual_seed(2)
    k, v = operand("spike", (T, 2, 8, 2, 2), g), operand("spike", (T, 2, 8, 2, 2), g)
    nodes = {"k": Node(Input(shape=(8, 2, 2), dtype=SPIKE)), "v": Node(Input(shape=(8, 2, 2), dtype=SPIKE)),
             "kv": Node(KVOuterAccumulate(heads=2, block=block, block_offset=1, delay=block - 1), ("k", "v")),
             "out": Node(Output(), ("kv",))}
    graph = Graph(nodes, ("out",), time_steps=T)
    y = run_graph(graph, {"k": k, "v": v})["out"]
    for t in range(T - 1):
        later = v.clone()
        later[t + 1:] = 1 - later[t + 1:]
        assert torch.equal(run_graph(graph, {"k": k, "v": later})["out"][:t + 1], y[:t + 1]), t
    per_step = KVOuterAccumulate(heads=2).run(k, v)
    assert torch.equal(y[3], per_step[1:4].sum(0))  # block [1, 3] leaves at its last step
    assert not y[:3].any()  # step 0 forms no block; the first block's sum is not out yet


# ------------------------------------------------------------------------------------------------
# problems() and infer() name what is wrong
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, field", [
    (KVOuterAccumulate(heads=0), "heads"),
    (KVOuterAccumulate(heads=1, block=0), "block"),
    (KVOuterAccumulate(heads=1, block_offset=-1), "block_offset"),
    (QMAccumulate(heads=1, out_bits=40, overflow="wrap"), "out_bits"),
    (ScoreValueAccumulate(heads=1, out_bits=12), "overflow"),
    (QMAccumulate(heads=1, overflow="wrap"), "overflow"),
    (SpikeScores(heads=-1), "heads"),
    (ScoreLUT(table=np.array([[0.5, 1.0]])), "table"),
    (ScoreLUT(table=np.array([1, 2, 3])), "table"),
])
def test_problems_name_the_field(op, field):
    (problem,) = op.problems()
    assert problem.startswith(field)


@pytest.mark.parametrize("op, types, message", [
    (KVOuterAccumulate(heads=2), [TensorType((8, 2, 3)), stream(SPIKE, 8, 2, 3)], "K must be integers"),
    (KVOuterAccumulate(heads=2), [stream(SPIKE, 8, 2, 3), stream(UINT8, 8, 2, 3)], "spike or ternary V"),
    (KVOuterAccumulate(heads=3), [stream(SPIKE, 8, 2, 3)] * 2, "not divisible by 3 heads"),
    (QMAccumulate(heads=2), [stream(TERNARY, 8, 2, 3), stream(UINT8, 2, 4, 4)], "binary Q"),
    (QMAccumulate(heads=2), [stream(SPIKE, 8, 2, 3), stream(UINT8, 2, 3, 3)], r"M \[2, 4, 4\]"),
    (SpikeScores(heads=2), [stream(SPIKE, 8, 2, 3), stream(UINT8, 8, 2, 3)], "binary Q and K"),
    (ScoreLUT(table=np.zeros((2, 5), np.int8)), [stream(int_type(4), 2, 6, 6)], "must be unsigned"),
    (ScoreLUT(table=np.zeros((2, 5), np.int8)), [stream(UINT8, 3, 6, 6)], r"scores \[2, N, N\]"),
    (ScoreValueAccumulate(heads=2), [stream(UINT8, 2, 5, 5), stream(SPIKE, 8, 2, 3)], r"scores \[2, 6, 6\]"),
    (ScoreValueAccumulate(heads=2), [stream(UINT8, 2, 6, 6), stream(UINT8, 8, 2, 3)], "spike or ternary V"),
])
def test_infer_refuses_wrong_operands(op, types, message):
    with pytest.raises(TypeMismatch, match=message):
        op.infer(types)


def test_lut_refuses_scores_beyond_its_table():
    with pytest.raises(ValueError, match="outside 0..2"):
        ScoreLUT(table=np.array([[1, 2, 3]])).run(torch.full((1, 1, 1, 2, 2), 3.0))
