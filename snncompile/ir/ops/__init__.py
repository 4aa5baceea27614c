"""Every IR node type, in one registry: serialisation, interpreters, docs and tests key on ``OPS``; the
families the stages use (neurons, synapses, host ops ...) are queries over each type's declarations
(``support.py``), never lists of their own."""
from .attention import BlockLinearAttention, LUTAttention, SpikeColumnSum, SpikeMask, TemporalWindow
from .base import Op, TypeMismatch
from .elementwise import Add, Mul, ReLU, Scale
from .int_attention import KVOuterAccumulate, QMAccumulate, ScoreLUT, ScoreValueAccumulate, SpikeScores
from .io import Input, Output, Repeat, TimeMean
from .linear import BatchNorm, Conv2d, Linear
from .int_synapse import IntConv2d, IntDense
from .loihi import LoihiLIF, LoihiTernaryLIF
from .multilevel import LevelScores, LevelScoreValue, LevelThreshold, MultiLevelAttention, MultiLevelSpike
from .neuron import LI, LIF, CubaLIF, TernaryLIF
from .pad import BorderPad
from .pool import MaxPool2d, SumPool2d
from .quant import Delay, IntAdd, IntShift, Quantize, TokenSum
from .relay import BlockSum, GradedRelay
from .shape import Flatten, TokenMean
from .token_attention import HeadChannelSum, HeadTokenMask
from .support import BACKEND_NAMES, ROLES, Backends, Refused

OPS: tuple[type[Op], ...] = (
    Input, Output, Repeat, TimeMean,
    Conv2d, Linear, BatchNorm,
    Add, Mul, ReLU, Scale,
    MaxPool2d, SumPool2d, Flatten, TokenMean,
    BorderPad,
    LIF, TernaryLIF, CubaLIF, LI,
    SpikeColumnSum, SpikeMask, BlockLinearAttention, LUTAttention, TemporalWindow,
    IntDense, IntConv2d, LoihiLIF, LoihiTernaryLIF,
    Quantize, IntAdd, IntShift, Delay, TokenSum, GradedRelay, BlockSum,
    KVOuterAccumulate, QMAccumulate, SpikeScores, ScoreLUT, ScoreValueAccumulate,
    MultiLevelSpike, MultiLevelAttention, LevelScores, LevelScoreValue, LevelThreshold,
    HeadChannelSum, HeadTokenMask,
)
OPS_BY_NAME: dict[str, type[Op]] = {op.type_name(): op for op in OPS}


def ops_where(**traits) -> tuple[type[Op], ...]:
    """The registered op types whose declarations equal every given trait, e.g. ``ops_where(ROLE="neuron")``,
    ``ops_where(DENDRITIC=True)``; a trait no op type declares is an error (a typo would match nothing)."""
    unknown = [t for t in traits if not hasattr(Op, t)]
    if unknown:
        raise AttributeError(f"op types declare no trait {unknown}")
    return tuple(op for op in OPS if all(getattr(op, t) == v for t, v in traits.items()))


def family(role: str) -> tuple[type[Op], ...]:
    """The registered op types of one role (``support.ROLES``): ``family("synapse")``, ``family("neuron")``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return ops_where(ROLE=role)


__all__ = ["OPS", "OPS_BY_NAME", "Op", "TypeMismatch", "ops_where", "family", "Backends", "Refused",
           "BACKEND_NAMES"] + [op.__name__ for op in OPS]
