"""The base of every IR node type.

A node type is a frozen dataclass: its fields are its parameters and its discrete-time semantics
(threshold comparison, reset, decay encoding, block size, delay, dtype, overflow ...), never a
free-form metadata dict. It knows three things about itself:

- ``problems()``: what is wrong with its own parameters (no input needed);
- ``infer(inputs)``: its output type from its input types, raising :class:`TypeMismatch`;
- ``run(*inputs)``: its semantics on time-major torch tensors ``[T, B, *shape]``
  (``[B, *shape]`` for static edges). The interpreter only calls these.

Besides, every node type declares what the later stages need to know about it (``support.py``): its
``ROLE``, ``STEPPING``, ``WORK`` and ``BACKENDS`` (each backend's mapping or the reason it has none), and
implements ``reads`` (its receptive field), ``scheduled``/``unscheduled`` (its absolute-time fields) and,
by its ``WORK``, ``fan_out`` or ``work``. Stages ask the op; none keeps a list of op types.

Tensor convention: float32 and spike edges carry float32 tensors (spikes as 0/1, ternary as -1/0/+1).
Integer edges (``intN``/``uintN``) carry exact integers, either as int64 tensors (what the integer
nodes, ``INTEGER_INPUTS = True``, return: the Loihi family computes in int64 and never rounds) or as
float32 tensors holding integers (what float nodes and callers produce). Integer nodes accept both.
A float node is handed an int64 input as float32 by the interpreter (exact while ``|x| < 2^24``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal, Sequence

import numpy as np
import torch

from ..interval import Interval
from ..types import TensorType
from .receptive import same_elements
from .support import Backends, Role, Stepping, Work


class TypeMismatch(ValueError):
    """An op's inputs do not have the types it needs."""


def frozen_array(a: np.ndarray) -> bool:
    """Whether ``a`` owns its memory and is read-only, as a node keeps its parameter arrays (so its bytes
    never change)."""
    return a.base is None and not a.flags.writeable


@dataclass(frozen=True, eq=False, kw_only=True)
class Op:
    """Base class. ``ARITY``: number of inputs (``None``: one or more). ``INTEGER_INPUTS``: ``run`` takes
    int64 input tensors unchanged (integer semantics, or a pure data move); otherwise the interpreter
    converts them to float32 first."""

    ARITY: ClassVar[int | None] = 1
    INTEGER_INPUTS: ClassVar[bool] = False  # run() takes int64 tensors as they are (else they arrive as float32)
    # what the stages after the IR need to know (support.py); None only on abstract bases: the registry test
    # refuses a node type that leaves one out
    ROLE: ClassVar[Role | None] = None
    STEPPING: ClassVar[Stepping | None] = None
    WORK: ClassVar[Work | None] = None
    BACKENDS: ClassVar[Backends | None] = None
    DENDRITIC: ClassVar[bool] = False  # computable in the receiving core's dendrite when fed synaptic sums
    BIAS_PASSES: ClassVar[bool] = False  # a constant per channel added to its input comes out added to its output
    RELAYED: ClassVar[bool] = False  # its output reaches its readers' dendrites through synapses of weight 1

    delay: int = dataclasses.field(default=0, metadata={"doc": (
        "timesteps between an input and its effect on the output on a time-stepped target; the output "
        "stream is y[t] = f(x)[t - delay], zero before (0: the same step; set by scheduling passes)")})
    overflow: Literal["none", "saturate", "wrap"] = dataclasses.field(default="none", metadata={"doc": (
        "what an integer result outside its dtype does: 'saturate' clips, 'wrap' is two's complement; "
        "'none' for float results, which cannot overflow")})

    def __post_init__(self):
        # Parameter arrays are owned by the node and immutable: passes build new nodes. An array that is
        # already so (another node's, handed on by dataclasses.replace) is shared, not copied again.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and not frozen_array(value):
                frozen = np.array(value, copy=True)
                frozen.setflags(write=False)
                object.__setattr__(self, f.name, frozen)

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def attributes(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not isinstance(getattr(self, f.name), np.ndarray)}

    @cached_property
    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.array(v)) for k, v in self.arrays().items()}

    def tensor(self, name: str) -> torch.Tensor:
        """A parameter array as a torch tensor (same dtype, bit-identical)."""
        return self._tensors[name]

    def problems(self) -> list[str]:
        return []

    def common_problems(self) -> list[str]:
        """Checks of the fields every node type has (``problems`` covers the type's own)."""
        p = [] if isinstance(self.delay, int) and self.delay >= 0 else [f"delay must be an int >= 0, got {self.delay!r}"]
        if self.overflow not in ("none", "saturate", "wrap"):
            p.append(f"overflow must be 'none', 'saturate' or 'wrap', got {self.overflow!r}")
        return p

    @cached_property
    def all_problems(self) -> tuple[str, ...]:
        """``common_problems() + problems()``, checked once per node (a node never changes; a graph is validated
        after every pass and before every range proof, and a synapse's checks read all its weights)."""
        return tuple(self.common_problems() + self.problems())

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        raise NotImplementedError

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reads(self, out: np.ndarray, in_shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        """For the output elements marked in the boolean mask ``out`` (one sample's output shape), the elements
        of each input (shapes ``in_shapes``) they depend on. Elementwise roles read their own position; every
        other node type overrides this with its structure (windows, rows, heads)."""
        if self.ROLE in ("elementwise", "neuron", "io", "host"):
            return same_elements(out, in_shapes)
        raise NotImplementedError(f"{self.type_name()} ({self.ROLE}) declares no receptive field")

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "Op":
        """This node on a time-stepped target, its inputs arriving ``arrival`` steps after the graph's (see
        ``passes/schedule.py``): its own delay and the fields that depend on absolute time. Default: as is
        (the node answers on the step its inputs arrive)."""
        return self

    def unscheduled(self, data_steps: int) -> "Op":
        """The inverse of :meth:`scheduled` for a run over the ``data_steps`` data window: no delay, every
        absolute-time field back to its unscheduled value."""
        return dataclasses.replace(self, delay=0) if self.delay else self

    def restarted(self, arrival: int) -> "Op | None":
        """This node made to forget what its inputs carried before ``arrival`` (the step its data arrive on a
        time-stepped target), so that its output from then on is what it would be had they been zero; None
        where it cannot. A node without state already forgets (``STEPPING`` local: its output at a step reads
        its inputs at that step, or ``delay`` steps before); a node with state or history, or one that reads a
        window of time, says how (or that it cannot) by overriding this."""
        return self if self.STEPPING == "local" else None

    def value_range(self, inputs: Sequence[Interval | None], in_types: Sequence[TensorType],
                    out: TensorType) -> Interval | None:
        """The proven interval of every output value, from the inputs' intervals (``None`` for a float
        or unknown input), their types ``in_types`` and this node's output type ``out``. The default: a spike or ternary output is bounded by
        its dtype, anything else is unknown (``None``). Integer-producing node types override it with
        the bound their arithmetic implies, before any wrap or saturation."""
        return Interval.of_dtype(out.dtype) if out.dtype.is_spike else None


def param(doc: str, default=dataclasses.MISSING):
    """A node-type field with its one-line meaning (rendered into ``docs/ir.md``; no pass reads it)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


def expect(condition: bool, message: str) -> None:
    """Raise :class:`TypeMismatch` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise TypeMismatch(message)


def expect_stream(t: TensorType, what: str = "input") -> None:
    expect(t.time == "stream", f"{what} must be a per-timestep stream, got a static value {t}")
