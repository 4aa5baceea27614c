"""Graph boundary and time-layout nodes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from ..types import FLOAT32, DType, TensorType, TimeLayout
from ..interval import Interval
from .base import Op, expect, param
from .support import Backends, Refused


@dataclass(frozen=True, eq=False, kw_only=True)
class Input(Op):
    """A graph input.

    Semantics: ``time="static"``: the caller feeds ``[B, *shape]`` (one image for all timesteps);
    ``time="stream"``: the caller feeds ``[T, B, *shape]``. Values must fit ``dtype``.
    """

    ARITY = 0
    ROLE, STEPPING, WORK = "io", "layout", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir="Input", netx="input")
    shape: tuple[int, ...] = param("per-sample, per-timestep shape, e.g. ``(C, H, W)``")
    dtype: DType = param("value type the caller promises (``float32``, ``spike``, ...)", FLOAT32)
    time: TimeLayout = param("``static``: one ``[B, *shape]`` value for all timesteps; ``stream``: "
                             "``[T, B, *shape]``", "stream")

    def problems(self) -> list[str]:
        p = [f"shape {self.shape} has a non-positive size"] if any(s < 1 for s in self.shape) else []
        if self.time not in ("stream", "static"):
            p.append(f"time must be 'stream' or 'static', got {self.time!r}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        return TensorType(tuple(self.shape), self.dtype, self.time)

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("Input nodes are fed by the caller")

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        # the caller promises values that fit the dtype (and a short stream is padded with zeros, in range)
        return None if self.dtype.kind == "float" else Interval.of_dtype(self.dtype)


@dataclass(frozen=True, eq=False, kw_only=True)
class Output(Op):
    """A graph output. Semantics: identity."""

    INTEGER_INPUTS = True  # int64 values leave the graph as they are
    ROLE, STEPPING, WORK = "io", "layout", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir="Output", netx="output")

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        return inputs[0]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def restarted(self, arrival: int) -> "Output":
        """An identity: a stream output is read where its data arrive (``ir.timing.output_window``)."""
        return self

    def value_range(self, inputs, in_types, out: TensorType) -> Interval | None:
        return inputs[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class Repeat(Op):
    """Static value -> stream. Semantics: ``y[t] = x`` for ``t < data_steps`` (all ``time_steps`` when
    ``data_steps`` is 0), ``y[t] = 0`` after: a scheduled graph runs longer than its input lasts, and the
    pipeline drains on zeros."""

    INTEGER_INPUTS = True  # a copy: int64 values pass unchanged
    ROLE, STEPPING, WORK = "host", "layout", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir="dissolved",
                        netx=Refused("host-side repetition of a static value: no netx layer"))
    time_steps: int = param("number of timesteps of the stream (the graph's ``time_steps``)")
    data_steps: int = param("timesteps that carry the value, zeros after (0: all of them)", 0)

    def problems(self) -> list[str]:
        p = [f"time_steps must be >= 1, got {self.time_steps}"] if self.time_steps < 1 else []
        if not (isinstance(self.data_steps, int) and 0 <= self.data_steps <= max(self.time_steps, 0)):
            p.append(f"data_steps must be an int in 0..time_steps={self.time_steps}, got {self.data_steps!r}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "static", f"Repeat needs a static input, got a stream {x}")
        return TensorType(x.shape, x.dtype, "stream")

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "Repeat":
        """The value for the data steps, zeros while the pipeline drains."""
        return dataclasses.replace(self, time_steps=run_steps, data_steps=data_steps)

    def unscheduled(self, data_steps: int) -> "Repeat":
        return dataclasses.replace(self, delay=0, time_steps=data_steps, data_steps=0)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unsqueeze(0).repeat(self.time_steps, *([1] * x.dim()))
        if self.data_steps:
            y[self.data_steps:] = 0
        return y

    def value_range(self, inputs, in_types, out):
        if inputs[0] is None:
            return None
        return Interval.hull(inputs[0], Interval(0, 0)) if self.data_steps else inputs[0]


@dataclass(frozen=True, eq=False, kw_only=True)
class TimeMean(Op):
    """Stream -> static mean over a window of time. Semantics: ``y = (1/n) sum_{t in window} x[t]`` with
    the window ``start .. start + n - 1``, ``n = steps`` (all remaining steps when ``steps`` is 0):
    torch ``mean(0)`` of that slice. A scheduled graph reads its outputs where they arrive."""

    ROLE, STEPPING, WORK = "host", "layout", "none"
    BACKENDS = Backends(lava="host", onnx="function", nir=Refused("NIR has no reduction over time"),
                        netx=Refused("a mean over time (the host-side readout): no netx layer"))
    start: int = param("first timestep averaged (the output's latency in a scheduled graph)", 0)
    steps: int = param("number of timesteps averaged (0: from ``start`` to the end)", 0)

    def problems(self) -> list[str]:
        ok = all(isinstance(v, int) and v >= 0 for v in (self.start, self.steps))
        return [] if ok else [f"start and steps must be ints >= 0, got {self.start!r} and {self.steps!r}"]

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "stream", f"TimeMean needs a stream, got {x}")
        return TensorType(x.shape, FLOAT32, "static")

    def scheduled(self, arrival: int, data_steps: int, run_steps: int, synapse_delay: int) -> "TimeMean":
        """The window where the input's data steps arrive."""
        return dataclasses.replace(self, start=arrival, steps=data_steps)

    def unscheduled(self, data_steps: int) -> "TimeMean":
        return dataclasses.replace(self, delay=0, start=0, steps=0)

    def restarted(self, arrival: int) -> "TimeMean | None":
        """It reads only its window: earlier steps are forgotten when the window starts with the data."""
        return self if self.start >= arrival else None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        end = self.start + self.steps if self.steps else x.shape[0]
        if end > x.shape[0]:
            raise ValueError(f"TimeMean window {self.start}..{end - 1} runs past the {x.shape[0]} timesteps")
        return x[self.start:end].mean(0)
