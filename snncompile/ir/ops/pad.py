"""Border padding with a per-channel value (the Meta-SpikeFormer's ``BNAndPadLayer`` after its BatchNorm)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..types import FLOAT32, TensorType
from .base import Op, expect, expect_stream, param
from .support import NETX_FLOAT, Backends, Refused

_FOLDED = "a float border pad: fold_linear_chains folds it with the convolutions around it before lowering"


@dataclass(frozen=True, eq=False, kw_only=True)
class BorderPad(Op):
    """Pads ``[C, H, W]`` by ``pad`` on every side with a per-channel constant.

    Semantics: ``y[t, c, h, w] = x[t, c, h - pad, w - pad]`` inside, ``value[c]`` on the border of width ``pad``.
    Behind a 1x1 convolution and BatchNorm, ``value`` = BN(0) makes it the zero padding of the convolution's input
    (upstream computes ``value`` in its own float order, so the float node keeps it as given).
    """

    ROLE, STEPPING, WORK = "shape", "local", "none"
    BACKENDS = Backends(lava=Refused(_FOLDED), onnx="function", nir=Refused(_FOLDED), netx=Refused(NETX_FLOAT))
    pad: int = param("border width in pixels on every side", 1)
    value: np.ndarray = param("border value per channel ``[C]``")

    def problems(self) -> list[str]:
        p = [] if self.pad >= 0 else [f"pad must be >= 0, got {self.pad}"]
        if self.value.ndim != 1:
            p.append(f"value must be 1-D [C], got shape {self.value.shape}")
        return p

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_stream(x)
        expect(len(x.shape) == 3 and x.shape[0] == self.value.shape[0],
               f"BorderPad has {self.value.shape[0]} channels and needs [C, H, W] input, got {x}")
        return TensorType((x.shape[0], x.shape[1] + 2 * self.pad, x.shape[2] + 2 * self.pad), FLOAT32)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        *lead, c, h, w = x.shape
        p = self.pad
        out = self.tensor("value").to(x.device).view(c, 1, 1).expand(*lead, c, h + 2 * p, w + 2 * p).clone()
        out[..., p:p + h, p:p + w] = x
        return out

    def reads(self, out, in_shapes):
        c, h, w = in_shapes[0]
        return [out[:, self.pad:self.pad + h, self.pad:self.pad + w].copy()]
