"""Structural export of the zoo modules (``snncompile.nn.sdt``), node by node from the module attributes.

Node names are the torch module paths (``block.0.attn.q_lif``), so spike traces map 1:1 to the torch
neuron modules; nodes without a module of their own carry a suffix (``.erode``, ``.add``, ...). The
operand order of every Add is torch's, so float sums are bit-identical.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..ir.ops import (Add, BlockLinearAttention, Input, LUTAttention, MaxPool2d, Mul, Output, Repeat,
                      SpikeColumnSum, SpikeMask, TemporalWindow, TimeMean, TokenMean)
from ..ir.types import SPIKE
from ..nn.attention import AttentionCore, AttentionLUT, TemporalWindow as TorchWindow
from ..nn.sdt import MLP, Block, SpikeDrivenTransformer, SpikingPatchSplitting, SpikingSelfAttention
from .builder import (NEURONS, Builder, ExportError, array, batchnorm, conv2d, join, leaf_problems, linear, neuron,
                      relu, same_behaviour, where)

# Zoo classes and the methods a subclass must not override (else it is a custom module).
ZOO_METHODS = {SpikeDrivenTransformer: ("forward", "forward_features", "time_major_input"),
               SpikingPatchSplitting: ("forward",),
               SpikingSelfAttention: ("forward", "_project", "attend", "qkv_spikes"),
               MLP: ("forward",), Block: ("forward",)}
# Parameters that the forward never reads (upstream keeps them so checkpoints load): dropped on export.
DEAD = ("talking_heads",)
_INNER = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.ModuleList, AttentionLUT, TorchWindow)


def structural_problems(path: str, model: nn.Module, methods: dict[type, tuple[str, ...]],
                        leaves: tuple[type, ...], dead: tuple[str, ...] = (), family: str = "a zoo",
                        owner: str = "the zoo's") -> list[str]:
    """Everything inside a backbone's module that its structural export would not reproduce: a module that is
    neither one of ``leaves`` (the layers and neuron types the export knows) nor one of the backbone's classes
    (``methods``: class -> the methods a subclass must not override), and options of known layers the IR cannot
    follow. Modules named in ``dead`` (parameters upstream keeps but never reads) are skipped; ``family`` and
    ``owner`` name the backbone in the message."""
    problems = []
    for name, m in model.named_modules():
        sub = join(path, name)
        if name.split(".")[-1] in dead:
            continue
        known = type(m) in leaves or any(same_behaviour(m, cls, meth) for cls, meth in methods.items())
        if not known:
            problems.append(f"cannot export {where(sub, m)}: replaces {family} layer; the structural export "
                            f"only knows {owner} own modules")
        problems += leaf_problems(sub, m)
    return problems


def zoo_problems(path: str, model: nn.Module) -> list[str]:
    """Everything inside a zoo module that the structural export would not reproduce."""
    return structural_problems(path, model, ZOO_METHODS, NEURONS + _INNER, DEAD)


def child(path: str, m: nn.Module, name: str, *classes: type) -> tuple[str, nn.Module]:
    child = getattr(m, name)
    if not any(type(child) is c for c in classes):
        raise ExportError([f"cannot export {where(join(path, name), child)}: expected "
                           f"{' or '.join(c.__name__ for c in classes)}"])
    return join(path, name), child


def neuron_of(b: Builder, path: str, m: nn.Module, name: str, x: str) -> str:
    return neuron(b, *child(path, m, name, *NEURONS), x)


def conv_bn(b: Builder, path: str, m: nn.Module, conv: str, bn: str, x: str) -> str:
    x = conv2d(b, *child(path, m, conv, nn.Conv2d), x)
    return batchnorm(b, *child(path, m, bn, nn.BatchNorm2d), x)


def pool(b: Builder, name: str, x: str, stride: int) -> str:
    """3x3 max-pool, padding 1: the stem's downsampling (stride 2) and DVS erode (stride 1)."""
    mode = "or" if b.type(x).dtype == SPIKE else "max"
    return b.add(name, MaxPool2d(kernel=(3, 3), stride=(stride, stride), padding=(1, 1), mode=mode), x)


def patch_embed(b: Builder, path: str, m: SpikingPatchSplitting, x: str) -> str:
    """Stages 0-2: conv, BN, LIF, optional OR-pool; stage 3: conv, BN, optional max-pool on the real BN
    output ``F``; ``U0 = F + BN(rpe_conv(proj_lif3(F)))``. Pool nodes are named as upstream's modules
    (``maxpool``, ``maxpool1``, ...)."""
    for i, suffix in enumerate(["", "1", "2"]):
        x = conv_bn(b, path, m, f"proj_conv{suffix}", f"proj_bn{suffix}", x)
        x = neuron_of(b, path, m, f"proj_lif{suffix}", x)
        if m.pooling_stat[i] == "1":
            x = pool(b, join(path, f"maxpool{suffix}"), x, 2)
    feat = conv_bn(b, path, m, "proj_conv3", "proj_bn3", x)
    if m.pooling_stat[3] == "1":
        feat = pool(b, join(path, "maxpool3"), feat, 2)
    rpe = conv_bn(b, path, m, "rpe_conv", "rpe_bn", neuron_of(b, path, m, "proj_lif3", feat))
    return b.add(join(path, "add"), Add(), feat, rpe)


def window(b: Builder, path: str, m: AttentionCore, name: str, x: str) -> str:
    wpath, w = child(path, m, name, TorchWindow)
    return b.add(wpath, TemporalWindow(weights=array(w.weights())), x, source=(wpath, w))


def qkv_neurons(b: Builder, path: str, m: AttentionCore, project: Callable[[str], str]) -> tuple[str, str, str]:
    """The Q, K, V neurons of an attention branch (any backbone), each after its projection ``project(name)``."""
    q = neuron_of(b, path, m, "q_lif", project("q"))
    if m.mode == "A2OS2A":
        k = relu(b, *child(path, m, "k_relu", nn.ReLU), project("k"))
        return q, k, neuron_of(b, path, m, "v_ternary", project("v"))
    k = neuron_of(b, path, m, "k_lif", project("k"))
    return q, k, neuron_of(b, path, m, "v_lif", project("v"))


def attention_core(b: Builder, path: str, m: AttentionCore, q: str, k: str, v: str, dvs: bool = False) -> str:
    """The shared attention core (``AttentionCore.attend``) on Q, K, V spike nodes; returns ``A``. ``dvs``: the
    SDT backbone's event mode (erode of K, V and, except in SDT mode, Q)."""
    cfg, mode, heads = m.cfg, m.mode, m.cfg.num_heads
    p = lambda name: join(path, name)  # noqa: E731
    if dvs:  # the SDT repository erodes K and V only, STAtten's code Q as well
        k, v = pool(b, f"{k}.erode", k, 1), pool(b, f"{v}.erode", v, 1)
        if mode != "SDT":
            q = pool(b, f"{q}.erode", q, 1)
    if mode == "SDT":
        counts = b.add(p("column_sum"), SpikeColumnSum(heads=heads, erode=dvs), k, v)
        mask = neuron_of(b, path, m, "talking_heads_lif", counts)
        return b.add(p("mask"), SpikeMask(heads=heads, erode=dvs), q, mask)
    if mode == "DS2TA":
        lpath, lut = child(path, m, "lut", AttentionLUT)
        x = b.add(lpath, LUTAttention(heads=heads, table=array(lut.table), scale=float(cfg.ds2ta_scale)),
                  q, k, v, source=(lpath, lut))
    else:
        # SSA's order does not change its float result with binary Q, K, V (nn.attention.SSA_ORDERS): one node
        block, scale, position = {"STAtten": (cfg.chunk_size, cfg.statten_scale, "kv"),
                                  "SSA": (1, cfg.ssa_scale, "out"),
                                  "A2OS2A": (1, 1.0, "out")}[mode]  # A2OS2A: x * 1.0 is exact
        x = b.add(p("core"), BlockLinearAttention(heads=heads, block=block, scale=float(scale),
                                                  scale_position=position), q, k, v)
    return neuron_of(b, path, m, "attn_lif", x)


def attention(b: Builder, path: str, m: SpikingSelfAttention, u: str) -> str:
    """One attention branch plus its membrane shortcut ``u + BN(proj_conv(A))``."""
    dvs = m.cfg.dvs_mode
    p = lambda name: join(path, name)  # noqa: E731

    def project(name: str, x: str) -> str:
        if m.mode == "DS2TA":
            x = window(b, path, m, f"{name}_window", x)
        return conv_bn(b, path, m, f"{name}_conv", f"{name}_bn", x)

    s = neuron_of(b, path, m, "shortcut_lif", u)
    q, k, v = qkv_neurons(b, path, m, lambda name: project(name, s))
    a = attention_core(b, path, m, q, k, v, dvs)
    if dvs and m.mode != "SDT":  # A = A * P + P with P = erode(S)
        erode_s = pool(b, f"{s}.erode", s, 1)
        a = b.add(p("mix_add"), Add(), b.add(p("mix_mul"), Mul(), a, erode_s), erode_s)
    return b.add(p("add"), Add(), u, project("proj", a))


def mlp(b: Builder, path: str, m: MLP, u: str) -> str:
    """``U + BN(fc2(SN(BN(fc1(SN(U))))))``, with the inner shortcut when hidden == D."""
    identity = u
    x = conv_bn(b, path, m, "fc1_conv", "fc1_bn", neuron_of(b, path, m, "fc1_lif", u))
    if m.inner_residual:
        x = identity = b.add(join(path, "inner_add"), Add(), identity, x)
    y = conv_bn(b, path, m, "fc2_conv", "fc2_bn", neuron_of(b, path, m, "fc2_lif", x))
    return b.add(join(path, "add"), Add(), y, identity)


def block(b: Builder, path: str, m: Block, u: str) -> str:
    u = attention(b, *child(path, m, "attn", SpikingSelfAttention), u)
    return mlp(b, *child(path, m, "mlp", MLP), u)


CONVERTERS = {SpikingPatchSplitting: patch_embed, SpikingSelfAttention: attention, MLP: mlp, Block: block}


def zoo_converter(m: nn.Module):
    """The converter of a zoo submodule usable inside an ``nn.Sequential``, or None."""
    for cls, convert in CONVERTERS.items():
        if same_behaviour(m, cls, ZOO_METHODS[cls]):
            return convert
    return None


def model_input(b: Builder, cfg, events: bool) -> str:
    """The input node of a backbone's model: an event ``stream``, or a ``static`` image and its ``Repeat(T)``."""
    shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if events:
        return b.add("input", Input(shape=shape, time="stream"))
    return b.add("input.repeat", Repeat(time_steps=cfg.time_steps), b.add("input", Input(shape=shape, time="static")))


def transformer(b: Builder, model: SpikeDrivenTransformer, events: bool) -> str:
    """The whole zoo model; returns the Output node. Static input: ``Input`` (static) + ``Repeat(T)``."""
    cfg = model.cfg
    u = patch_embed(b, *child("", model, "patch_embed", SpikingPatchSplitting), model_input(b, cfg, events))
    for i, blk in enumerate(model.block):
        u = block(b, *child("block", model.block, str(i), Block), u)
    y = neuron_of(b, "", model, "head_lif", b.add("token_mean", TokenMean(), u))
    y = linear(b, *child("", model, "head", nn.Linear), y)
    if not cfg.tet:
        y = b.add("time_mean", TimeMean(), y)
    return b.add("output", Output(), y)


def dead_parameters(model: nn.Module, b: Builder, dead: tuple[str, ...]) -> list[str]:
    """State-dict names of the parameters the export did not use; raises unless each belongs to a module named in
    ``dead`` (the backbone's parameters that upstream keeps but its forward never reads)."""
    unused = [(name, m) for name, m in model.named_modules()
              if id(m) not in b.used and next(m.parameters(recurse=False), None) is not None]
    unexpected = [f"cannot export {where(n, m)}: its parameters are not used by the export" for n, m in unused
                  if n.split(".")[-1] not in dead]
    if unexpected:
        raise ExportError(unexpected)
    return [f"{n}.{k}" for n, m in unused for k, _ in m.named_parameters(recurse=False)]

