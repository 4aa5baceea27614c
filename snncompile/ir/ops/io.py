"""Graph boundary and time-layout nodes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..types import FLOAT32, DType, TensorType, TimeLayout
from .base import Op, expect, param


@dataclass(frozen=True, eq=False, kw_only=True)
class Input(Op):
    """A graph input.

    Semantics: ``time="static"``: the caller feeds ``[B, *shape]`` (one image for all timesteps);
    ``time="stream"``: the caller feeds ``[T, B, *shape]``. Values must fit ``dtype``.
    """

    ARITY = 0
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


@dataclass(frozen=True, eq=False, kw_only=True)
class Output(Op):
    """A graph output. Semantics: identity."""

    INTEGER_INPUTS = True  # int64 values leave the graph as they are

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        return inputs[0]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True, eq=False, kw_only=True)
class Repeat(Op):
    """Static value -> stream. Semantics: ``y[t] = x`` for ``t = 0 .. time_steps-1``."""

    time_steps: int = param("number of timesteps T of the stream (the graph's ``time_steps``)")

    def problems(self) -> list[str]:
        return [f"time_steps must be >= 1, got {self.time_steps}"] if self.time_steps < 1 else []

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "static", f"Repeat needs a static input, got a stream {x}")
        return TensorType(x.shape, x.dtype, "stream")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).repeat(self.time_steps, *([1] * x.dim()))


@dataclass(frozen=True, eq=False, kw_only=True)
class TimeMean(Op):
    """Stream -> static mean over time. Semantics: ``y = (1/T) sum_t x[t]`` (torch ``mean(0)``)."""

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect(x.time == "stream", f"TimeMean needs a stream, got {x}")
        return TensorType(x.shape, FLOAT32, "static")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(0)
