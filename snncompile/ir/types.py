"""Value types on IR edges.

Every edge carries a time-major stream ``[T, B, *shape]``: ``shape`` is per sample and per timestep.
The dtype says what values may flow: real numbers (float32), integers of a given width, binary
spikes {0, 1} or ternary spikes {-1, 0, +1}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DTypeKind = Literal["float", "int", "spike", "ternary"]


@dataclass(frozen=True)
class DType:
    kind: DTypeKind
    bits: int
    signed: bool

    def __post_init__(self):
        if self.kind not in ("float", "int", "spike", "ternary"):
            raise ValueError(f"unknown dtype kind {self.kind!r}")
        if self.bits < 1:
            raise ValueError(f"dtype bits must be >= 1, got {self.bits}")

    @property
    def min(self) -> float:
        if self.kind == "float":
            return float("-inf")
        if self.kind == "ternary":
            return -1
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> float:
        if self.kind == "float":
            return float("inf")
        if self.kind in ("spike", "ternary"):
            return 1
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    @property
    def is_spike(self) -> bool:
        return self.kind in ("spike", "ternary")

    def __str__(self) -> str:
        if self.kind in ("spike", "ternary", "float"):
            return {"spike": "spike", "ternary": "ternary", "float": f"float{self.bits}"}[self.kind]
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    @staticmethod
    def parse(text: str) -> "DType":
        """Inverse of ``str()``: ``float32``, ``spike``, ``ternary``, ``int24``, ``uint8``."""
        if text == "spike":
            return SPIKE
        if text == "ternary":
            return TERNARY
        for prefix, kind, signed in (("float", "float", True), ("uint", "int", False), ("int", "int", True)):
            if text.startswith(prefix) and text[len(prefix):].isdigit():
                return DType(kind, int(text[len(prefix):]), signed)
        raise ValueError(f"unknown dtype {text!r}")


FLOAT32 = DType("float", 32, True)
SPIKE = DType("spike", 1, False)
TERNARY = DType("ternary", 2, True)


def int_type(bits: int, signed: bool = True) -> DType:
    return DType("int", bits, signed)


TimeLayout = Literal["stream", "static"]


@dataclass(frozen=True)
class TensorType:
    """Per-sample, per-timestep shape and dtype of an edge.

    ``time="stream"``: a value per timestep, tensors ``[T, B, *shape]``. ``time="static"``: one value
    for all timesteps (a static image), tensors ``[B, *shape]``; a ``Repeat`` node turns it into a stream.
    """

    shape: tuple[int, ...]
    dtype: DType = FLOAT32
    time: TimeLayout = "stream"

    def __str__(self) -> str:
        static = "static " if self.time == "static" else ""
        return f"{static}{self.dtype}[{', '.join(map(str, self.shape))}]"
