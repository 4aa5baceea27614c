"""The simulator's fast exact kernels, one per op type that has one (:data:`KERNELS`).

An op module (``snncompile.ir.ops``) holds the op's specification and its reference semantics, ``run`` and
``simulate``: a plain exact transcription of its docstring equations. A kernel computes the same values
faster, in narrower arithmetic wherever the input's actual range (a reduction per timestep or operand,
checked at run time) proves it exact, and falls back to the reference elsewhere:

- the Loihi neurons step in int32 (:mod:`.neurons`);
- the float SpikingJelly neurons step in place, with the reference's float operations (:mod:`.float_neurons`);
- the max-pool takes its windows' maxima one axis at a time (:mod:`.pool`);
- the integer synapses and the attention accumulates sum in float32 GEMMs where every partial sum is an
  integer below 2^24 (:mod:`.synapses`, :mod:`.attention`).

Outputs keep their documented dtypes (int64 integers, float32 spikes and float values), on the input's device
(the kernels move the weights there). ``tests/test_int_kernels.py`` pins every integer kernel to a plain
transcription of the equations and to the reference, ``tests/test_float_kernels.py`` the float neurons and
the max-pool to their references bit for bit.
"""
from __future__ import annotations

from ...ir.interpret import Kernel
from ...ir.ops import (LIF, IntConv2d, IntDense, KVOuterAccumulate, LoihiLIF, LoihiTernaryLIF, MaxPool2d, Op,
                       QMAccumulate, ScoreValueAccumulate, SpikeScores, TernaryLIF)
from .attention import kv_outer_accumulate, qm_accumulate, score_value_accumulate, spike_scores
from .float_neurons import float_neuron
from .neurons import loihi_neuron
from .pool import max_pool
from .synapses import int_conv2d, int_dense

KERNELS: dict[type[Op], Kernel] = {
    LoihiLIF: loihi_neuron, LoihiTernaryLIF: loihi_neuron, LIF: float_neuron, TernaryLIF: float_neuron,
    IntDense: int_dense, IntConv2d: int_conv2d, MaxPool2d: max_pool,
    KVOuterAccumulate: kv_outer_accumulate, QMAccumulate: qm_accumulate, SpikeScores: spike_scores,
    ScoreValueAccumulate: score_value_accumulate,
}

__all__ = ["KERNELS"]
