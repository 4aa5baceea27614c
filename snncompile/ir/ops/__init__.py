"""Every IR node type, in one registry: serialisation, interpreters, docs and tests key on ``OPS``."""
from .attention import BlockLinearAttention, LUTAttention, SpikeColumnSum, SpikeMask, TemporalWindow
from .base import Op, TypeMismatch
from .elementwise import Add, Mul, ReLU, Scale
from .int_attention import KVOuterAccumulate, QMAccumulate, ScoreLUT, ScoreValueAccumulate, SpikeScores
from .io import Input, Output, Repeat, TimeMean
from .linear import BatchNorm, Conv2d, Linear
from .loihi import IntConv2d, IntDense, LoihiLIF, LoihiTernaryLIF
from .neuron import LI, LIF, CubaLIF, TernaryLIF
from .pool import MaxPool2d, SumPool2d
from .quant import Delay, IntAdd, IntShift, Quantize, TokenSum
from .shape import Flatten, TokenMean

OPS: tuple[type[Op], ...] = (
    Input, Output, Repeat, TimeMean,
    Conv2d, Linear, BatchNorm,
    Add, Mul, ReLU, Scale,
    MaxPool2d, SumPool2d, Flatten, TokenMean,
    LIF, TernaryLIF, CubaLIF, LI,
    SpikeColumnSum, SpikeMask, BlockLinearAttention, LUTAttention, TemporalWindow,
    IntDense, IntConv2d, LoihiLIF, LoihiTernaryLIF,
    Quantize, IntAdd, IntShift, Delay, TokenSum,
    KVOuterAccumulate, QMAccumulate, SpikeScores, ScoreLUT, ScoreValueAccumulate,
)
OPS_BY_NAME: dict[str, type[Op]] = {op.type_name(): op for op in OPS}

__all__ = ["OPS", "OPS_BY_NAME", "Op", "TypeMismatch"] + [op.__name__ for op in OPS]
