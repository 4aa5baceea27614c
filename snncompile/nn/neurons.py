"""Multi-step spiking neurons with the exact forward semantics of SpikingJelly 0.0.0.0.12.

Tensors are time-major, ``[T, ...]``. Every neuron is stateless between calls: the membrane starts
at ``v_reset`` at the first step of each forward, so samples never leak into each other and nothing
like ``functional.reset_net`` has to be remembered.

The float operation order below is the one of SpikingJelly's torch backend, so spike trains are
bit-identical to the upstream models (the CuPy backend computes the same expression).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SigmoidSurrogate(torch.autograd.Function):
    """Heaviside forward (fires on ``x >= 0``); gradient of ``sigmoid(alpha * x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(x * ctx.alpha)
        return grad_output * (1.0 - sg) * sg * ctx.alpha, None


def heaviside(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    return SigmoidSurrogate.apply(x, alpha)


def charge(v: torch.Tensor, x: torch.Tensor, leak, *, divide: bool, decay_input: bool = True,
           v_rest: float = 0.0) -> torch.Tensor:
    """Membrane charge, SpikingJelly's float operation order (the float LIF equation, written once).

    ``decay_input=True``:  ``h = v + (x - (v - v_rest)) / tau``   (or ``* rate`` when not ``divide``)
    ``decay_input=False``: ``h = v - (v - v_rest) / tau + x``
    """
    if decay_input:
        d = x - (v - v_rest)
        return v + (d / leak if divide else d * leak)
    d = v - v_rest
    return v - (d / leak if divide else d * leak) + x


def fire_and_reset(h, v_threshold, v_reset, alpha, detach_reset, strict: bool = False,
                    subtract: bool = False):
    """Fire on ``h - θ >= 0`` (``> 0`` when ``strict``); hard reset to ``v_reset`` or subtract ``θ``."""
    spike = (h - v_threshold > 0).to(h.dtype) if strict else heaviside(h - v_threshold, alpha)
    spike_d = spike.detach() if detach_reset else spike
    if subtract:
        return spike, h - spike_d * v_threshold
    return spike, (1.0 - spike_d) * h + spike_d * v_reset


def ternary_fire_and_reset(h, v_threshold, v_reset, alpha, detach_reset, strict: bool = False):
    """+1 on ``h - θ >= 0``, -1 on ``-h - θ >= 0`` (``> 0`` when ``strict``); hard reset on either spike."""
    if strict:
        pos, neg = (h - v_threshold > 0).to(h.dtype), (-h - v_threshold > 0).to(h.dtype)
    else:
        pos, neg = heaviside(h - v_threshold, alpha), heaviside(-h - v_threshold, alpha)
    fired = (pos + neg).detach() if detach_reset else pos + neg
    return pos - neg, (1.0 - fired) * h + fired * v_reset


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neuron over a ``[T, ...]`` sequence (SpikingJelly ``MultiStepLIFNode``).

    Semantics per element, ``v[-1] = v_reset``::

        h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau
        s[t] = 1 if h[t] - v_threshold >= 0 else 0
        v[t] = h[t] * (1 - s[t]) + v_reset * s[t]

    ``record_v`` keeps the post-reset membrane of the last call in ``self.v_seq`` (for inspection).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate_alpha: float = 4.0, detach_reset: bool = True):
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"LIF tau must be > 1, got {tau}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = float(v_reset)
        self.surrogate_alpha = float(surrogate_alpha)
        self.detach_reset = detach_reset
        self.record_v = False
        self.v_seq: torch.Tensor | None = None

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return charge(v, x, self.tau, divide=True, v_rest=self.v_reset)

    def _check_sequence(self, x_seq: torch.Tensor) -> None:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects a [T, ...] tensor, got shape {tuple(x_seq.shape)}")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check_sequence(x_seq)
        v = torch.full_like(x_seq[0], self.v_reset)
        spikes, vs = [], []
        for x in x_seq:
            spike, v = self.fire(self.charge(v, x))
            spikes.append(spike)
            if self.record_v:
                vs.append(v)
        self.v_seq = torch.stack(vs) if self.record_v else None
        return torch.stack(spikes)

    def fire(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spike and post-reset membrane from the charged membrane ``h``."""
        return fire_and_reset(h, self.v_threshold, self.v_reset, self.surrogate_alpha, self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


class MultiStepParametricLIF(MultiStepLIF):
    """LIF with one learnable decay per layer (SpikingJelly ``MultiStepParametricLIFNode``).

    ``1/tau = sigmoid(w)``, ``w`` initialised to ``-ln(init_tau - 1)``. Semantics::

        h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) * sigmoid(w)

    then fire and hard reset as :class:`MultiStepLIF`. The parameter is named ``w`` as upstream, so
    checkpoints load unchanged.
    """

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate_alpha: float = 4.0, detach_reset: bool = True):
        super().__init__(init_tau, v_threshold, v_reset, surrogate_alpha, detach_reset)
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return charge(v, x, self.w.sigmoid(), divide=False, v_rest=self.v_reset)

    def extra_repr(self) -> str:
        return f"tau={1.0 / torch.sigmoid(self.w.detach()).item():.4f} (learnable), v_threshold={self.v_threshold}"


class MultiStepTernaryLIF(MultiStepLIF):
    """Ternary LIF: emits -1, 0 or +1 (A2OS2A's V neuron, after Guo et al.'s ternary spike).

    Same charge as :class:`MultiStepLIF`; fires on the magnitude, hard reset on either spike::

        h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau
        s[t] = +1 if h[t] - v_threshold >= 0; -1 if -h[t] - v_threshold >= 0; else 0
        v[t] = h[t] * (1 - |s[t]|) + v_reset * |s[t]|

    The papers do not pin the constants (``models.md`` §5.4 is UNVERIFIED); ``tau`` and ``v_threshold``
    are configuration (``ModelConfig.ternary_tau`` / ``ternary_threshold``), defaulting to the
    SpikingJelly form used by the rest of the backbone (tau 2, threshold 1).
    """

    def fire(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ternary_fire_and_reset(h, self.v_threshold, self.v_reset, self.surrogate_alpha, self.detach_reset)


def make_neuron(spike_mode: str, v_threshold: float = 1.0) -> MultiStepLIF:
    """The neuron for an upstream ``--spike-mode`` value (``lif`` or ``plif``)."""
    if spike_mode == "lif":
        return MultiStepLIF(tau=2.0, v_threshold=v_threshold)
    if spike_mode == "plif":
        return MultiStepParametricLIF(init_tau=2.0, v_threshold=v_threshold)
    raise ValueError(f"spike_mode must be 'lif' or 'plif', got {spike_mode!r}")
