"""Independent re-derivation of the upstream STAtten / Spike-Driven Transformer (``sdt``) forward pass.

Test-support code only: it documents, in plain torch, what the official implementation computes,
so that ``snncompile.nn.sdt`` can be checked against it tensor by tensor. It re-derives

- ``Intelligent-Computing-Lab-Yale/STAtten`` @ ``e9048a18`` (2025-06-07): ``module/sps.py``
  (``MS_SPS``), ``module/ms_conv.py`` (``dvs_pooling``, ``MS_MLP_Conv``, ``MS_SSA_Conv``,
  ``MS_Block_Conv``) and ``model/spikeformer.py`` (``SpikeDrivenTransformer``, factory ``sdt``)
  -- ``repository="STAtten"``, the default;
- ``BICLab/Spike-Driven-Transformer`` @ ``3faa8227`` (2024-03-18), the repository STAtten forked
  and the source of SDSA ("SDT") checkpoints -- ``repository="SDT"``. Same files, same key names,
  same forward except: ``spike_mode`` reaches EVERY neuron (stem, shortcut, q/k/v, talking_heads,
  the unused attn_lif / rpe_lif -- so a plif checkpoint carries ``w`` for those too); attention is
  always SDSA (no ``attention_mode`` / ``chunk_size``); in DVS mode Q is NOT pooled (only K, V,
  K*V and Q*m are) and there is no ``x_pool``; its pooling class is called ``Erode``.
- the neurons of SpikingJelly 0.0.0.0.12 (``clock_driven/neuron.py``): ``BaseNode`` charge / fire /
  reset, ``MultiStepLIFNode`` and ``MultiStepParametricLIFNode`` on the ``torch`` backend.

Class names, attribute names, constructor arguments, the order of the float operations and the
``hook`` dictionary (keys built from the class name + layer index, e.g. ``MS_SSA_Conv0_q_lif``)
are kept as upstream, so that an upstream ``state_dict`` loads with ``strict=True`` and every hooked
tensor can be compared by name. Hook names produced (``l`` = block index)::

    MS_SPS_lif, MS_SPS_lif1, MS_SPS_lif2, MS_SPS_lif3
    MS_SSA_Conv{l}_first_lif, MS_SSA_Conv{l}_q_lif, _k_lif, _v_lif     [T,B,C,Hs,Ws], after DVS pooling
    STAtten: MS_SSA_Conv{l}_after_qkv                                    [T,B,C,Hs,Ws]
    SDT:     MS_SSA_Conv{l}_kv_before [T,B,h,N,d], _kv [T,B,h,1,d], _x_after_qkv [T,B,h,N,d]
    MS_MLP_Conv{l}_fc1_lif, MS_MLP_Conv{l}_fc2_lif
    head_lif                                                             [T,B,D]

Substitutions (inference-equivalent):

- SpikingJelly neurons -> :class:`MultiStepLIFNode` / :class:`MultiStepParametricLIFNode` below, the
  torch-backend recurrence (upstream asks for ``backend="cupy"``; the CuPy kernel evaluates the same
  expression. For LIF, tau = 2 makes ``/ tau`` an exact halving so no contraction/rounding
  difference is possible; for PLIF the GPU kernel may fuse ``v + (x - v) * k`` into an FMA, which can
  differ from the torch backend in the last bit of the membrane -- the torch backend is the reference
  here, as the brief of this file demands).
- ``timm`` ``DropPath`` -> ``nn.Identity`` (and upstream never calls ``drop_path`` in forward anyway);
  ``timm``'s ``to_2tuple`` / ``trunc_normal_`` -> trivial local equivalents.
- The surrogate gradient is irrelevant for the forward pass: firing is ``(v - v_threshold >= 0)``.

Neuron state: as a SpikingJelly ``MemoryModule`` each neuron keeps ``v`` between calls; the upstream
training/eval loops call ``functional.reset_net(model)`` after every batch. :func:`reset_net` does that
here; :func:`run` resets and then runs one forward (what every upstream evaluation step amounts to).

Upstream quirks preserved on purpose (do not "fix" them here):

1. (STAtten repository) ``MS_SSA_Conv`` ends with ``assert self.attention_mode not in ["STAtten, SDT"]`` -- a one-element
   list holding the string ``"STAtten, SDT"`` -- so the guard is a no-op for every real mode name.
   A mode that is neither ``"STAtten"`` nor ``"SDT"`` therefore silently skips attention AND the
   projection: the branch output is the ``shortcut_lif`` spike tensor itself, and the block computes
   ``U + SN(U)`` instead of ``U + BN(W_proj A)``.
2. ``dvs_pooling`` (SDT repository: ``Erode``) is ``MaxPool3d(kernel=(1,3,3), stride=1,
   padding=(0,1,1))`` applied to 5-D tensors, which torch reads as ``[N, C, D, H, W]``. On ``[T,B,C,Hs,Ws]`` (q/k/v and the shortcut spikes) this
   is a 3x3 spatial max per channel. In SDT mode it is also applied to the per-head tensors
   ``K*V`` and ``Q*m`` of shape ``[T,B,h,N,d]``, where the 3x3 window runs over (token index,
   channel-within-head index) -- not a spatial neighbourhood. The STAtten repository pools Q, K and
   V after their neurons; the SDT repository pools only K and V.
3. (STAtten repository) ``spike_mode`` only reaches ``MS_MLP_Conv`` (``fc1_lif``, ``fc2_lif``) and
   ``head_lif``. ``MS_SPS`` accepts it but builds LIF neurons anyway, and ``MS_Block_Conv`` does not
   pass it to ``MS_SSA_Conv``, whose neurons are always LIF. (``"alif"``/``"blif"`` give a LIF head
   and no MLP neurons.) In the SDT repository every neuron follows ``spike_mode``.
4. ``MS_SSA_Conv`` scale in STAtten mode uses the token-grid HEIGHT ``H`` (not heads, not ``N``):
   ``1/H`` on static data, ``1/(H*H*chunk_size)`` in DVS mode; it multiplies ``K^T V`` before the
   product with ``Q``. ``self.scale = 0.125`` is never used.
5. Dead modules present in the state dict or the module tree: ``talking_heads`` (Conv1d, in every
   checkpoint, never called), ``attn_lif`` in SDT mode, ``talking_heads_lif`` in STAtten mode,
   ``MS_SPS.rpe_lif`` (with a ``w`` in SDT-repository plif checkpoints, as has ``attn_lif``).
6. In STAtten + DVS mode the attention output is ``A * P + P`` with ``P = pool(SN(U))`` (values in
   {0, 1, 2}); the ``_after_qkv`` hook records that tensor (not detached, unlike the other hooks).
7. In ``MS_SPS`` the 4th stage pools the real-valued BN output before ``proj_lif3``, and the RPE
   residual adds that pooled real map. The hook ``MS_SPS_lif3`` is ``proj_lif3``'s output.
8. ``MS_MLP_Conv`` has an inner shortcut (``self.res``) when ``hidden == in_features``
   (``mlp_ratio == 1``): ``x = U + BN(fc1)`` feeds ``fc2_lif`` and is also the outer identity.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

UPSTREAM_REPO = "Intelligent-Computing-Lab-Yale/STAtten"
UPSTREAM_COMMIT = "e9048a18"


# --------------------------------------------------------------------------------------------
# SpikingJelly 0.0.0.0.12 neurons (torch backend)
# --------------------------------------------------------------------------------------------

def heaviside(x: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's surrogate forward: 1 where ``x >= 0``, else 0, in the dtype of ``x``."""
    return (x >= 0).to(x)


class _MultiStepNode(nn.Module):
    """Common part of SpikingJelly's ``BaseNode`` + multi-step torch backend.

    ``self.v`` is the membrane ("memory"); it is the python float ``v_reset`` after :meth:`reset`
    (SpikingJelly registers the memory with that float value) and becomes a tensor at the first step.
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: float = 0.0, detach_reset: bool = False,
                 backend: str = "torch"):
        super().__init__()
        # ``backend`` is accepted for signature compatibility; only the torch formula exists here.
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.backend = backend
        self.v = v_reset

    def reset(self) -> None:
        self.v = self.v_reset

    def neuronal_charge(self, x: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def neuronal_fire(self) -> torch.Tensor:
        return heaviside(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        spike_d = spike.detach() if self.detach_reset else spike
        # hard reset (v_reset is never None in these models)
        self.v = (1.0 - spike_d) * self.v + spike_d * self.v_reset

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        assert x_seq.dim() > 1
        spike_seq = []
        v_seq = []
        for t in range(x_seq.shape[0]):
            spike_seq.append(self.single_step(x_seq[t]).unsqueeze(0))
            v_seq.append(self.v.unsqueeze(0))
        self.v_seq = torch.cat(v_seq, 0)
        return torch.cat(spike_seq, 0)


class MultiStepLIFNode(_MultiStepNode):
    """``MultiStepLIFNode(tau, decay_input=True, v_threshold, v_reset=0.)``, torch backend."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float = 0.0, surrogate_function=None, detach_reset: bool = False,
                 backend: str = "torch", lava_s_cale: int = 1 << 6):
        assert isinstance(tau, float) and tau > 1.0
        super().__init__(v_threshold, v_reset, detach_reset, backend)
        self.tau = tau
        self.decay_input = decay_input

    def neuronal_charge(self, x: torch.Tensor) -> None:
        # The four branches of LIFNode.neuronal_charge; the models use decay_input=True, v_reset=0.
        if self.decay_input:
            if self.v_reset is None or self.v_reset == 0.0:
                self.v = self.v + (x - self.v) / self.tau
            else:
                self.v = self.v + (x - (self.v - self.v_reset)) / self.tau
        else:
            if self.v_reset is None or self.v_reset == 0.0:
                self.v = self.v * (1.0 - 1.0 / self.tau) + x
            else:
                self.v = self.v - (self.v - self.v_reset) / self.tau + x


class MultiStepParametricLIFNode(_MultiStepNode):
    """``MultiStepParametricLIFNode(init_tau)``: learnable ``w``, ``1/tau = sigmoid(w)``, torch backend."""

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float = 0.0, surrogate_function=None, detach_reset: bool = False,
                 backend: str = "torch"):
        assert isinstance(init_tau, float) and init_tau > 1.0
        super().__init__(v_threshold, v_reset, detach_reset, backend)
        self.decay_input = decay_input
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def neuronal_charge(self, x: torch.Tensor) -> None:
        if self.decay_input:
            if self.v_reset is None or self.v_reset == 0.0:
                self.v = self.v + (x - self.v) * self.w.sigmoid()
            else:
                self.v = self.v + (x - (self.v - self.v_reset)) * self.w.sigmoid()
        else:
            if self.v_reset is None or self.v_reset == 0.0:
                self.v = self.v * (1.0 - self.w.sigmoid()) + x
            else:
                self.v = self.v - (self.v - self.v_reset) * self.w.sigmoid() + x


def _make_node(spike_mode: str, v_threshold: float = 1.0):
    """The SDT repository's per-neuron switch: LIF or PLIF; any other mode builds nothing."""
    if spike_mode == "lif":
        return MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="cupy")
    if spike_mode == "plif":
        return MultiStepParametricLIFNode(init_tau=2.0, v_threshold=v_threshold, detach_reset=True,
                                          backend="cupy")
    return None


def _set_node(module: nn.Module, name: str, node) -> None:
    if node is not None:  # upstream leaves the attribute undefined -> AttributeError at forward
        setattr(module, name, node)


def reset_net(net: nn.Module) -> None:
    """``spikingjelly.clock_driven.functional.reset_net``: every neuron back to ``v = v_reset``."""
    for m in net.modules():
        if isinstance(m, _MultiStepNode):
            m.reset()


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


# --------------------------------------------------------------------------------------------
# module/ms_conv.py
# --------------------------------------------------------------------------------------------

class dvs_pooling(nn.Module):  # noqa: N801 - upstream name
    """3-D max-pool with a (1, 3, 3) window, stride 1, zero-size padding on the first pooled axis."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))

    def forward(self, x):
        return self.pool(x)


class MS_MLP_Conv(nn.Module):  # noqa: N801
    """MLP branch: ``U + BN2(W2 SN2(BN1(W1 SN1(U) + b1)) + b2)`` (+ inner shortcut when hidden == in)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, spike_mode="lif",
                 layer=0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.res = in_features == hidden_features
        self.fc1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden_features)
        if spike_mode == "lif":
            self.fc1_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        elif spike_mode == "plif":
            self.fc1_lif = MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True, backend="cupy")
        self.fc2_conv = nn.Conv2d(hidden_features, out_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(out_features)
        if spike_mode == "lif":
            self.fc2_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        elif spike_mode == "plif":
            self.fc2_lif = MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True, backend="cupy")
        self.c_hidden = hidden_features
        self.c_output = out_features
        self.layer = layer

    def forward(self, x, hook=None):
        T, B, C, H, W = x.shape
        tag = self._get_name() + str(self.layer)
        identity = x

        s1 = self.fc1_lif(x)
        if hook is not None:
            hook[tag + "_fc1_lif"] = s1.detach()
        y = self.fc1_bn(self.fc1_conv(s1.flatten(0, 1))).reshape(T, B, self.c_hidden, H, W).contiguous()
        if self.res:
            y = identity + y
            identity = y
        s2 = self.fc2_lif(y)
        if hook is not None:
            hook[tag + "_fc2_lif"] = s2.detach()
        y = self.fc2_bn(self.fc2_conv(s2.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return y + identity, hook


def _per_head(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[T,B,C,H,W] -> [T,B,heads,N,C/heads]; channel c belongs to head c // (C/heads)."""
    T, B, C, H, W = x.shape
    return (x.flatten(3).transpose(-1, -2).reshape(T, B, H * W, num_heads, C // num_heads)
            .permute(0, 1, 3, 2, 4).contiguous())


class MS_SSA_Conv(nn.Module):  # noqa: N801
    """Attention branch (``attention_mode`` "STAtten" or "SDT"; anything else: see quirk 1).

    ``repository="SDT"`` gives the Spike-Driven Transformer repository's class instead (always SDSA,
    ``spike_mode`` honoured, Q not pooled); ``attention_mode`` / ``chunk_size`` are then ignored.
    """

    def __init__(self, dim, num_heads=8, mode="direct_xor", dvs=False, layer=0,
                 attention_mode="T_STAtten", chunk_size=2, spike_mode="lif", repository="STAtten"):
        super().__init__()
        assert repository in ("STAtten", "SDT")
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.repository = repository
        self.dim = dim
        self.dvs = dvs
        self.num_heads = num_heads
        self.attention_mode = attention_mode if repository == "STAtten" else "SDT"
        if dvs:
            self.pool = dvs_pooling()
        self.scale = 0.125  # unused upstream
        # STAtten repository: spike_mode is ignored, every neuron here is a plain LIF (quirk 3).
        sm = spike_mode if repository == "SDT" else "lif"
        self.q_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm2d(dim)
        _set_node(self, "q_lif", _make_node(sm))
        self.k_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm2d(dim)
        _set_node(self, "k_lif", _make_node(sm))
        self.v_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm2d(dim)
        _set_node(self, "v_lif", _make_node(sm))
        _set_node(self, "attn_lif", _make_node(sm, v_threshold=0.5))
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)
        _set_node(self, "talking_heads_lif", _make_node(sm, v_threshold=0.5))
        self.proj_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm2d(dim)
        _set_node(self, "shortcut_lif", _make_node(sm))
        self.mode = mode
        self.layer = layer
        self.chunk_size = chunk_size

    def _qkv(self, name, x_flat, T, B, C, H, W, hook, tag):
        s = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x_flat))
        s = getattr(self, f"{name}_lif")(s.reshape(T, B, C, H, W).contiguous())
        if self.dvs and (name != "q" or self.repository == "STAtten"):
            s = self.pool(s)
        if hook is not None:
            hook[tag + f"_{name}_lif"] = s.detach()
        return _per_head(s, self.num_heads)

    def forward(self, x, hook=None):
        T, B, C, H, W = x.shape
        head_dim = C // self.num_heads
        N = H * W
        tag = self._get_name() + str(self.layer)
        identity = x

        x = self.shortcut_lif(x)
        if hook is not None:
            hook[tag + "_first_lif"] = x.detach()
        if self.dvs and self.repository == "STAtten":
            x_pool = self.pool(x)
        x_flat = x.flatten(0, 1)
        # Order as upstream: Q, K, V each conv -> BN -> LIF -> (pool; not Q in the SDT repository)
        # -> hook -> per-head view.
        q = self._qkv("q", x_flat, T, B, C, H, W, hook, tag)
        k = self._qkv("k", x_flat, T, B, C, H, W, hook, tag)
        v = self._qkv("v", x_flat, T, B, C, H, W, hook, tag)

        if self.attention_mode == "STAtten":
            scaling_factor = 1 / (H * H * self.chunk_size) if self.dvs else 1 / H
            g, c = T // self.chunk_size, self.chunk_size

            def blocks(t):
                # [T,B,h,N,d] -> [g,B,h,c*N,d]: the c timesteps of a block stacked along rows.
                return (t.view(g, c, B, self.num_heads, N, head_dim).permute(0, 2, 3, 1, 4, 5)
                        .reshape(g, B, self.num_heads, c * N, head_dim))

            m = torch.matmul(blocks(k).transpose(-2, -1), blocks(v)) * scaling_factor  # [g,B,h,d,d]
            out = torch.matmul(blocks(q), m)                                           # [g,B,h,cN,d]
            out = (out.reshape(g, B, self.num_heads, c, N, head_dim).permute(0, 3, 1, 2, 4, 5)
                   .reshape(T, B, self.num_heads, N, head_dim))
            x = out.transpose(4, 3).reshape(T, B, C, N).contiguous()
            x = self.attn_lif(x).reshape(T, B, C, H, W)
            if self.dvs:
                x = x.mul(x_pool)
                x = x + x_pool
            if hook is not None:
                hook[tag + "_after_qkv"] = x
            x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()

        if self.attention_mode == "SDT":
            kv = k.mul(v)
            if hook is not None:
                hook[tag + "_kv_before"] = kv
            if self.dvs:
                kv = self.pool(kv)  # quirk 2: window over (token, channel-in-head)
            kv = kv.sum(dim=-2, keepdim=True)
            kv = self.talking_heads_lif(kv)
            if hook is not None:
                hook[tag + "_kv"] = kv.detach()
            x = q.mul(kv)
            if self.dvs:
                x = self.pool(x)
            if hook is not None:
                hook[tag + "_x_after_qkv"] = x.detach()
            x = x.transpose(3, 4).reshape(T, B, C, H, W).contiguous()
            x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()

        if self.repository == "STAtten":
            assert self.attention_mode not in ["STAtten, SDT"]  # quirk 1: effectively no check at all

        x = x + identity
        return x, v, hook


class MS_Block_Conv(nn.Module):  # noqa: N801
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, sr_ratio=1, attn_mode="direct_xor", spike_mode="lif",
                 dvs=False, layer=0, attention_mode="STAtten", chunk_size=2, repository="STAtten"):
        super().__init__()
        # STAtten repository: spike_mode deliberately not forwarded to the attention (quirk 3)
        extra = {"spike_mode": spike_mode} if repository == "SDT" else {}
        self.attn = MS_SSA_Conv(dim, num_heads=num_heads, mode=attn_mode, dvs=dvs, layer=layer,
                                attention_mode=attention_mode, chunk_size=chunk_size,
                                repository=repository, **extra)
        self.drop_path = nn.Identity()  # timm DropPath at inference (and unused in forward)
        self.mlp = MS_MLP_Conv(in_features=dim, hidden_features=int(dim * mlp_ratio),
                               spike_mode=spike_mode, layer=layer)

    def forward(self, x, hook=None):
        x_attn, attn, hook = self.attn(x, hook=hook)
        x, hook = self.mlp(x_attn, hook=hook)
        return x, attn, hook


# --------------------------------------------------------------------------------------------
# module/sps.py
# --------------------------------------------------------------------------------------------

class MS_SPS(nn.Module):  # noqa: N801
    """Stem: 4 x (conv3x3 -> BN), LIF after stages 0-2, optional 3x3/2 max-pools, RPE residual."""

    def __init__(self, img_size_h=128, img_size_w=128, patch_size=4, in_channels=2, embed_dims=256,
                 pooling_stat="1111", spike_mode="lif", repository="STAtten"):
        super().__init__()
        sm = spike_mode if repository == "SDT" else "lif"  # STAtten: spike_mode ignored (quirk 3)
        self.image_size = [img_size_h, img_size_w]
        patch_size = _to_2tuple(patch_size)
        self.patch_size = patch_size
        self.pooling_stat = pooling_stat
        self.C = in_channels
        self.H, self.W = self.image_size[0] // patch_size[0], self.image_size[1] // patch_size[1]
        self.num_patches = self.H * self.W
        widths = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i, sfx in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{sfx}", nn.Conv2d(widths[i], widths[i + 1], kernel_size=3,
                                                       stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{sfx}", nn.BatchNorm2d(widths[i + 1]))
            _set_node(self, f"proj_lif{sfx}", _make_node(sm))
            setattr(self, f"maxpool{sfx}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1,
                                                         ceil_mode=False))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        _set_node(self, "rpe_lif", _make_node(sm))  # never called upstream

    def forward(self, x, hook=None):
        T, B, _, H, W = x.shape
        ratio = 1
        x = x.flatten(0, 1)
        for i, sfx in enumerate(["", "1", "2"]):
            x = getattr(self, f"proj_conv{sfx}")(x)
            x = getattr(self, f"proj_bn{sfx}")(x).reshape(T, B, -1, H // ratio, W // ratio).contiguous()
            x = getattr(self, f"proj_lif{sfx}")(x)
            if hook is not None:
                hook[self._get_name() + "_lif" + sfx] = x.detach()
            x = x.flatten(0, 1).contiguous()
            if self.pooling_stat[i] == "1":
                x = getattr(self, f"maxpool{sfx}")(x)
                ratio *= 2

        x = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":
            x = self.maxpool3(x)  # on the real BN output, before the neuron (quirk 7)
            ratio *= 2
        x_feat = x
        x = self.proj_lif3(x.reshape(T, B, -1, H // ratio, W // ratio).contiguous())
        if hook is not None:
            hook[self._get_name() + "_lif3"] = x.detach()
        x = self.rpe_bn(self.rpe_conv(x.flatten(0, 1).contiguous()))
        x = (x + x_feat).reshape(T, B, -1, H // ratio, W // ratio).contiguous()
        H, W = H // self.patch_size[0], W // self.patch_size[1]
        return x, (H, W), hook


# --------------------------------------------------------------------------------------------
# model/spikeformer.py
# --------------------------------------------------------------------------------------------

class SpikeDrivenTransformer(nn.Module):
    """Upstream ``sdt``: input [B,C,H,W] (repeated T times) or [B,T,C,H,W]; returns ``(logits, hook)``.

    ``repository`` selects STAtten @ e9048a18 (default) or Spike-Driven Transformer @ 3faa8227.
    """

    def __init__(self, img_size_h=128, img_size_w=128, patch_size=16, in_channels=2, num_classes=11,
                 embed_dims=512, num_heads=8, mlp_ratios=4, qkv_bias=False, qk_scale=None,
                 drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=nn.LayerNorm,
                 depths=[6, 8, 6], sr_ratios=[8, 4, 2], T=4, chunk_size=2, pooling_stat="1111",
                 spike_mode="lif", attn_mode="direct_xor", dvs_mode=False, TET=False,
                 attention_mode="STAtten", pretrained=False, pretrained_cfg=None,
                 repository="STAtten"):
        super().__init__()
        assert repository in ("STAtten", "SDT")
        self.repository = repository
        if repository == "SDT":
            attention_mode = "SDT"  # that repository has SDSA only
        self.num_classes = num_classes
        self.depths = depths
        self.T = T
        self.TET = TET
        self.dvs = dvs_mode
        self.attention_mode = attention_mode
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depths)]

        self.patch_embed = MS_SPS(img_size_h=img_size_h, img_size_w=img_size_w, patch_size=patch_size,
                                  in_channels=in_channels, embed_dims=embed_dims,
                                  pooling_stat=pooling_stat, spike_mode=spike_mode,
                                  repository=repository)
        self.block = nn.ModuleList([
            MS_Block_Conv(dim=embed_dims, num_heads=num_heads, mlp_ratio=mlp_ratios, qkv_bias=qkv_bias,
                          qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                          drop_path=dpr[j], sr_ratio=sr_ratios, attn_mode=attn_mode,
                          spike_mode=spike_mode, dvs=dvs_mode, layer=j,
                          attention_mode=self.attention_mode, chunk_size=chunk_size,
                          repository=repository)
            for j in range(depths)])
        if spike_mode in ["lif", "alif", "blif"]:
            self.head_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        elif spike_mode == "plif":
            self.head_lif = MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True, backend="cupy")
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)  # timm's trunc_normal_ (a=-2, b=2 absolute)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x, hook=None):
        x, _, hook = self.patch_embed(x, hook=hook)
        for blk in self.block:
            x, _, hook = blk(x, hook=hook)
        x = x.flatten(3).mean(3)  # token mean -> [T,B,D]
        return x, hook

    def forward(self, x, hook=None):
        if len(x.shape) < 5:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        else:
            x = x.transpose(0, 1).contiguous()
        x, hook = self.forward_features(x, hook=hook)
        x = self.head_lif(x)
        if hook is not None:
            hook["head_lif"] = x.detach()
        x = self.head(x)
        if not self.TET:
            x = x.mean(0)
        return x, hook


def sdt(**kwargs) -> SpikeDrivenTransformer:
    """The upstream timm-registered factory (without the timm registry / default_cfg)."""
    return SpikeDrivenTransformer(**kwargs)


def run(model: SpikeDrivenTransformer, x: torch.Tensor, hook: dict | None = None):
    """One upstream evaluation step: fresh neuron state (``reset_net``), then ``model(x, hook)``."""
    reset_net(model)
    return model(x, hook=hook)
