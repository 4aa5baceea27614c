"""Float forward of ``snncompile.nn.sdt`` vs. the re-derived upstream model (``tests/upstream_reference.py``).

Which upstream: attention "STAtten" is compared with STAtten @ e9048a18; attention "SDT" with the
Spike-Driven Transformer repository @ 3faa8227 (the source of SDSA checkpoints, which our SDT mode
follows). STAtten's own "SDT" attention_mode is compared separately (``test_statten_repository_sdt_mode``:
equal for lif on static data, strict xfail where the two upstream SDT variants differ).

For every config of the grid both models share one randomised state dict (weights, BN affine AND
running statistics, PLIF ``w``), run in eval mode on the same inputs (static images and, in DVS
mode, integer event frames), and must agree bit for bit (``torch.equal``) on

- every spike tensor upstream records in its ``hook`` dict, in forward order, each obtained from our
  model through forward hooks on our neuron modules (mapping: ``ours_as_upstream_hooks``), plus
  the tensor our attention feeds to ``proj_conv``;
- the spikes AND post-reset membranes (``v_seq``) of every neuron that exists in both models under
  the same module path (this includes the pre-pooling q/k/v of DVS mode, which upstream hooks only
  after pooling, and catches last-bit differences in the membrane that flip no spike);
- the logits: both run the same float ops in the same order on the same device and dtype, so no
  tolerance is needed.

The reference itself was also checked (outside this suite, not reproducible here because it needs
the upstream sources and SpikingJelly) against the real upstream code of both repositories running
the real SpikingJelly 0.0.0.0.12 ``neuron.py`` on its torch backend: identical hooks and logits on
this whole grid.
"""
from __future__ import annotations

import argparse
import itertools
import re
from pathlib import Path

import pytest
from conftest import SHARED
import torch
import torch.nn.functional as F
from torch import nn

from snncompile.nn.neurons import MultiStepLIF, MultiStepParametricLIF
from snncompile.nn.backbones import build_model
from snncompile.config import ModelConfig

try:  # tests/ as a package or as a rootdir-inserted directory
    from . import upstream_reference as ref
except ImportError:
    import upstream_reference as ref

KEYS_FILE = SHARED / "spec" / "upstream_checkpoint_keys.txt"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """These models are tiny: intra-op threading only costs (10x slower on a loaded 2-core box).
    Both models run under the same setting, so it does not affect the comparison."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def repository_of(cfg: ModelConfig) -> str:
    """Which upstream our mode follows: SDT = the Spike-Driven Transformer repository (source of SDSA
    checkpoints; every neuron follows spike_mode, Q not eroded), STAtten = STAtten's repository."""
    return "SDT" if cfg.attention == "SDT" else "STAtten"


def reference_from_config(cfg: ModelConfig, repository: str | None = None) -> ref.SpikeDrivenTransformer:
    """The upstream model with the arguments upstream's train.py would pass for ``cfg``."""
    return ref.sdt(repository=repository or repository_of(cfg),img_size_h=cfg.img_size, img_size_w=cfg.img_size, in_channels=cfg.in_channels,
                   num_classes=cfg.num_classes, embed_dims=cfg.dim, num_heads=cfg.num_heads,
                   mlp_ratios=cfg.mlp_ratio, depths=cfg.layers, T=cfg.time_steps,
                   chunk_size=cfg.chunk_size, pooling_stat=cfg.pooling_stat,
                   spike_mode=cfg.spike_mode, dvs_mode=cfg.dvs_mode, TET=cfg.tet,
                   attention_mode=cfg.attention)


@torch.no_grad()
def randomise_(model: nn.Module, seed: int, calibrate=None) -> None:
    """Random weights, BN affine and running statistics, PLIF ``w``: every neuron layer live.

    ``calibrate`` (a callable running one forward of ``model``) first sets each BN's running stats
    to the batch statistics of that forward (train mode, cumulative average), so the BN outputs are
    roughly ``gamma * N(0, 1) + beta`` with beta ~ 0.6: neurons fire sometimes but not always at
    every depth. The running stats are then perturbed so they are not exactly data-derived either.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g)

    def rand(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    modules = sorted(model.named_modules(), key=lambda kv: kv[0])
    for _, m in modules:
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.copy_(randn(m.weight.shape) / m.weight[0].numel() ** 0.5)
            if m.bias is not None:
                m.bias.copy_(randn(m.bias.shape) * 0.2)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(rand(m.weight.shape, 0.6, 1.4))
            m.bias.copy_(0.6 + randn(m.bias.shape) * 0.4)
            m.running_mean.copy_(randn(m.running_mean.shape) * 0.3)
            m.running_var.copy_(rand(m.running_var.shape, 0.4, 2.0))
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
        elif isinstance(getattr(m, "w", None), nn.Parameter):
            # PLIF: 1/tau = sigmoid(w) away from the 0.5 of w = 0 (so the decay is not an exact halving)
            m.w.copy_(rand((), -1.5, 1.5))
    if calibrate is not None:
        bns = [m for _, m in modules if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        calibrate()
        model.eval()
        for m in bns:
            m.momentum = 0.1
            m.running_mean.add_(randn(m.running_mean.shape) * 0.05 * m.running_var.sqrt())
            m.running_var.mul_(rand(m.running_var.shape, 0.9, 1.1))
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))


def record_neurons(model: nn.Module, neuron_types) -> tuple[dict, dict, list]:
    """Forward hooks storing every neuron module's output spikes and post-reset membrane ``v_seq``
    (both SpikingJelly's multi-step nodes and ours keep ``v_seq``; ours only with ``record_v``)."""
    spikes: dict[str, torch.Tensor] = {}
    membranes: dict[str, torch.Tensor] = {}

    def hook(mod, args, y, name):
        spikes[name] = y.detach().clone()
        membranes[name] = mod.v_seq.detach().clone()

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, neuron_types):
            if hasattr(m, "record_v"):
                m.record_v = True
            handles.append(m.register_forward_hook(lambda mod, a, y, name=name: hook(mod, a, y, name)))
    return spikes, membranes, handles


def record_proj_inputs(model: nn.Module, layers: int) -> tuple[dict, list]:
    """The tensor each block's attention feeds to ``proj_conv`` (``[T*B, C, Hs, Ws]``)."""
    out: dict[int, torch.Tensor] = {}
    handles = [model.block[l].attn.proj_conv.register_forward_pre_hook(
        lambda mod, args, l=l: out.__setitem__(l, args[0].detach().clone())) for l in range(layers)]
    return out, handles


def erode(x: torch.Tensor) -> torch.Tensor:
    """Upstream's dvs_pooling, written independently of both models."""
    return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))


def per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[T,B,C,Hs,Ws] -> [T,B,heads,N,C/heads] (upstream's reshape of q/k/v)."""
    T, B, C, Hs, Ws = x.shape
    return x.flatten(3).transpose(-1, -2).reshape(T, B, Hs * Ws, heads, C // heads).permute(0, 1, 3, 2, 4)


# ---------------------------------------------------------------------------------------------
# upstream hook name -> tensor of OUR model
# ---------------------------------------------------------------------------------------------
#
# Raw neuron outputs (our module path):
#   MS_SPS_lif / _lif1 / _lif2 / _lif3     patch_embed.proj_lif / proj_lif1 / proj_lif2 / proj_lif3
#   MS_SSA_Conv{l}_first_lif               block.{l}.attn.shortcut_lif
#   MS_SSA_Conv{l}_{q,k,v}_lif             block.{l}.attn.{q,k,v}_lif      (static mode)
#   MS_SSA_Conv{l}_kv        (SDT)         block.{l}.attn.talking_heads_lif   [T,B,h,1,d]
#   MS_MLP_Conv{l}_fc1_lif / _fc2_lif      block.{l}.mlp.fc1_lif / fc2_lif
#   head_lif                               head_lif
# Derived (upstream hooks a tensor that is not a neuron output of ours):
#   MS_SSA_Conv{l}_{q,k,v}_lif  (DVS)      erode(block.{l}.attn.{q,k,v}_lif)   upstream hooks after pooling
#                                          (SDT repository: Q is not pooled, its hook is raw q_lif)
#   MS_SSA_Conv{l}_kv_before (SDT)         per_head(K) * per_head(V), K/V as hooked above (pooled in DVS)
#   MS_SSA_Conv{l}_x_after_qkv (SDT)       per_head(Q) * talking_heads_lif, eroded in DVS
#   MS_SSA_Conv{l}_after_qkv (STAtten)     attn_lif reshaped to [T,B,C,Hs,Ws]; in DVS  A*P + P with
#                                          P = erode(shortcut_lif)
# The SDT/STAtten post-attention tensors are additionally checked against what our model actually
# feeds to proj_conv (forward pre-hook), see test body.

def ours_as_upstream_hooks(rec: dict, cfg: ModelConfig, T: int, B: int, repository: str) -> dict:
    pool = erode if cfg.dvs_mode else (lambda t: t)
    pool_q = pool if repository == "STAtten" else (lambda t: t)  # the SDT repository never erodes Q
    C, heads, Hs = cfg.dim, cfg.num_heads, cfg.token_grid
    out = {
        "MS_SPS_lif": rec["patch_embed.proj_lif"],
        "MS_SPS_lif1": rec["patch_embed.proj_lif1"],
        "MS_SPS_lif2": rec["patch_embed.proj_lif2"],
        "MS_SPS_lif3": rec["patch_embed.proj_lif3"],
        "head_lif": rec["head_lif"],
    }
    for l in range(cfg.layers):
        a, tag = f"block.{l}.attn.", f"MS_SSA_Conv{l}"
        out[f"{tag}_first_lif"] = rec[a + "shortcut_lif"]
        out[f"{tag}_q_lif"] = pool_q(rec[a + "q_lif"])
        for n in "kv":
            out[f"{tag}_{n}_lif"] = pool(rec[a + f"{n}_lif"])
        q, k, v = (per_head(out[f"{tag}_{n}_lif"], heads) for n in "qkv")
        if cfg.attention == "SDT":
            out[f"{tag}_kv_before"] = k * v
            out[f"{tag}_kv"] = rec[a + "talking_heads_lif"]
            out[f"{tag}_x_after_qkv"] = pool(q * rec[a + "talking_heads_lif"])
        elif cfg.attention == "STAtten":
            att = rec[a + "attn_lif"].reshape(T, B, C, Hs, Hs)
            if cfg.dvs_mode:
                p = erode(rec[a + "shortcut_lif"])
                att = att * p + p
            out[f"{tag}_after_qkv"] = att
        out[f"MS_MLP_Conv{l}_fc1_lif"] = rec[f"block.{l}.mlp.fc1_lif"]
        out[f"MS_MLP_Conv{l}_fc2_lif"] = rec[f"block.{l}.mlp.fc2_lif"]
    return out


def assert_same(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} (ours) != {tuple(want.shape)} (upstream)"
    if not torch.equal(got, want):
        diff = (got != want).nonzero()
        first = tuple(diff[0].tolist())
        raise AssertionError(f"{name}: {diff.shape[0]} of {want.numel()} elements differ; first at "
                             f"{first}: ours {got[first].item()} vs upstream {want[first].item()}")


# Parameters upstream has and we do not: PLIF ``w`` of neurons that never run. Only the SDT repository
# in plif mode has them (every neuron there is parametric, including the unused ones).
DEAD_UPSTREAM_KEY = re.compile(r"^(patch_embed\.rpe_lif|block\.\d+\.attn\.attn_lif)\.w$")


def load_into_reference(reference: nn.Module, state_dict: dict) -> None:
    """Our state dict into the reference: strict, except for upstream's dead PLIF ``w`` (left at init)."""
    result = reference.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys, f"keys of ours unknown upstream: {result.unexpected_keys}"
    bad = [k for k in result.missing_keys if not DEAD_UPSTREAM_KEY.match(k)]
    assert not bad, f"upstream keys missing from ours: {bad}"


def compare(cfg: ModelConfig, x: torch.Tensor, seed: int, state_dict: dict | None = None,
            reference: ref.SpikeDrivenTransformer | None = None, ours: nn.Module | None = None) -> dict:
    """Build both models with one state dict, run ``x`` and compare everything; returns firing rates."""
    if ours is None:
        ours = build_model(cfg)
        if state_dict is None:
            randomise_(ours, seed, calibrate=lambda: ours(x))
            state_dict = ours.state_dict()
        else:
            ours.load_state_dict(state_dict, strict=True)
    if reference is None:
        reference = reference_from_config(cfg)
        load_into_reference(reference, state_dict if state_dict is not None else ours.state_dict())
    repository = reference.repository
    ours.eval()
    reference.eval()

    rec_ours, v_ours, h1 = record_neurons(ours, (MultiStepLIF,))
    rec_ref, v_ref, h2 = record_neurons(reference, (ref.MultiStepLIFNode, ref.MultiStepParametricLIFNode))
    proj_in, h3 = record_proj_inputs(ours, cfg.layers)
    try:
        with torch.no_grad():
            logits_ours = ours(x)
            hook: dict = {}
            logits_ref, hook = ref.run(reference, x, hook)
            # a second forward of each must give the same result (no state leaks between samples)
            logits_ours2 = ours(x)
            logits_ref2, _ = ref.run(reference, x)
    finally:
        for h in h1 + h2 + h3:
            h.remove()

    T, B = cfg.time_steps, x.shape[0]
    C, Hs = cfg.dim, cfg.token_grid
    # 1. every upstream hook tensor, in forward order (so a failure names the first divergent one);
    #    right after each block's post-attention hook, also what our attention really feeds to
    #    proj_conv (the derived tensors of ours_as_upstream_hooks re-apply upstream's formula to our
    #    neuron outputs, so this is the check of our attention arithmetic itself)
    expected_keys = {"MS_SPS_lif", "MS_SPS_lif1", "MS_SPS_lif2", "MS_SPS_lif3", "head_lif"}
    for l in range(cfg.layers):
        expected_keys |= {f"MS_SSA_Conv{l}_{s}" for s in ("first_lif", "q_lif", "k_lif", "v_lif")}
        expected_keys |= {f"MS_SSA_Conv{l}_{s}" for s in (
            ("kv_before", "kv", "x_after_qkv") if cfg.attention == "SDT" else ("after_qkv",))}
        expected_keys |= {f"MS_MLP_Conv{l}_fc1_lif", f"MS_MLP_Conv{l}_fc2_lif"}
    assert set(hook) == expected_keys
    mine = ours_as_upstream_hooks(rec_ours, cfg, T, B, repository)
    assert set(mine) == set(hook)
    for name in hook:  # insertion order = upstream's forward order
        assert_same(name, mine[name], hook[name])
        m = re.fullmatch(r"MS_SSA_Conv(\d+)_(x_after_qkv|after_qkv)", name)
        if m:
            l = int(m.group(1))
            want = hook[name]
            if m.group(2) == "x_after_qkv":  # per-head [T,B,h,N,d] -> [T,B,C,Hs,Ws] as upstream does
                want = want.transpose(3, 4).reshape(T, B, C, Hs, Hs)
            assert_same(f"block.{l}.attn.proj_conv input", proj_in[l].reshape(T, B, C, Hs, Hs), want)

    # 2. every neuron present in both models (same module path): raw spikes AND the post-reset
    #    membrane of every timestep, bit for bit (catches fp32 rounding differences, e.g. in the PLIF
    #    charge, that happen not to flip a spike on this input)
    common = set(rec_ours) & set(rec_ref)
    assert set(rec_ours) == common, f"neurons of ours that upstream does not run: {set(rec_ours) - common}"
    # upstream neurons that never run (so are never hooked): attn_lif in SDT mode,
    # talking_heads_lif in STAtten mode, patch_embed.rpe_lif
    assert set(rec_ref) == common
    for name in sorted(common):
        assert_same(f"neuron {name} spikes", rec_ours[name], rec_ref[name])
        assert_same(f"neuron {name} membrane", v_ours[name], v_ref[name])

    # 3. logits, bit for bit: same float ops in the same order on the same device and dtype
    assert logits_ref.shape == ((T, B, cfg.num_classes) if cfg.tet else (B, cfg.num_classes))
    assert_same("logits", logits_ours, logits_ref)
    assert_same("logits (2nd forward, ours)", logits_ours2, logits_ours)
    assert_same("logits (2nd forward, reference)", logits_ref2, logits_ref)

    return {k: v.float().mean().item() for k, v in hook.items()}


def make_inputs(cfg: ModelConfig, seed: int, batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    shape = (batch, cfg.in_channels, cfg.img_size, cfg.img_size)
    inputs = {"static": torch.randn(shape, generator=g) * 1.5}
    if cfg.dvs_mode:
        # event frames: small non-negative integer counts per (ON/OFF) pixel and timestep
        inputs["events"] = torch.randint(0, 4, (batch, cfg.time_steps) + shape[1:], generator=g).float()
    return inputs


# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------

GRID = list(itertools.product(("STAtten", "SDT"), (False, True), ("lif", "plif"), (False, True),
                              ("0011", "1010"), (4, 1)))


def _grid_id(p):
    att, dvs, sm, tet, pool, r = p
    return f"{att}-{'dvs' if dvs else 'static'}-{sm}-{'tet' if tet else 'mean'}-p{pool}-r{r}"


@pytest.mark.parametrize("params", GRID, ids=[_grid_id(p) for p in GRID])
def test_matches_upstream_grid(params):
    att, dvs, sm, tet, pool, r = params
    cfg = ModelConfig(attention=att, img_size=16, in_channels=2 if dvs else 3, num_classes=5, dim=16,
                      num_heads=2, layers=2, mlp_ratio=r, time_steps=4, chunk_size=2,
                      pooling_stat=pool, spike_mode=sm, dvs_mode=dvs, tet=tet)
    seed = GRID.index(params)
    for kind, x in make_inputs(cfg, seed).items():
        rates = compare(cfg, x, seed)
        # the comparison is only meaningful if the spike tensors are not all-zero / all-one
        live = [k for k, v in rates.items() if 0.0 < v < 1.0 or k.endswith("after_qkv")]
        assert len(live) >= len(rates) - 2, f"{kind}: degenerate firing rates {rates}"


# STAtten's own repository also has an "SDT" attention_mode. Our SDT follows the Spike-Driven
# Transformer repository instead (checkpoints with SDSA attention come from there; STAtten's train.py
# never passes attention_mode, so no STAtten checkpoint is an SDT model). The two upstream SDT
# variants coincide for lif on static data and nowhere else:
#   - plif: STAtten keeps stem/attention neurons LIF (no ``w``), the SDT repository makes them PLIF;
#   - dvs:  STAtten erodes Q after q_lif, the SDT repository does not.
# The divergent cells are strict xfails: they document the difference and flag any change of it.
STATTEN_SDT_MODE = list(itertools.product((False, True), ("lif", "plif")))


@pytest.mark.parametrize(
    "dvs,spike_mode",
    [pytest.param(d, sm, marks=[] if (not d and sm == "lif") else pytest.mark.xfail(
        strict=True, reason="our SDT follows the Spike-Driven Transformer repository, not STAtten's "
                            "SDT mode (plif: neuron types; dvs: Q erosion)"))
     for d, sm in STATTEN_SDT_MODE],
    ids=[f"{'dvs' if d else 'static'}-{sm}" for d, sm in STATTEN_SDT_MODE])
def test_statten_repository_sdt_mode(dvs, spike_mode):
    cfg = ModelConfig(attention="SDT", img_size=16, in_channels=2 if dvs else 3, num_classes=5, dim=16,
                      num_heads=2, layers=2, mlp_ratio=4, time_steps=4, pooling_stat="0011",
                      spike_mode=spike_mode, dvs_mode=dvs)
    seed = 900 + STATTEN_SDT_MODE.index((dvs, spike_mode))
    for x in make_inputs(cfg, seed).values():
        ours = build_model(cfg)
        randomise_(ours, seed, calibrate=lambda: ours(x))
        reference = reference_from_config(cfg, repository="STAtten")
        reference.load_state_dict(ours.state_dict(), strict=True)
        compare(cfg, x, seed, reference=reference, ours=ours)


EXTRA = [
    # bigger / odder shapes: more heads, T not 4, chunk 1 and chunk = T, 3 layers, 4 pools
    dict(attention="STAtten", img_size=32, dim=32, num_heads=4, time_steps=6, chunk_size=3),
    dict(attention="STAtten", img_size=16, dim=24, num_heads=3, time_steps=4, chunk_size=1, layers=3),
    dict(attention="STAtten", img_size=16, dim=32, num_heads=4, time_steps=4, chunk_size=4,
         dvs_mode=True, in_channels=2),
    dict(attention="SDT", img_size=32, dim=32, num_heads=4, time_steps=5, pooling_stat="1111",
         dvs_mode=True, in_channels=2, spike_mode="plif"),
    dict(attention="SDT", img_size=16, dim=24, num_heads=3, time_steps=3, layers=3, mlp_ratio=2),
]


@pytest.mark.parametrize("kw", EXTRA, ids=[f"extra{i}" for i in range(len(EXTRA))])
def test_matches_upstream_extra_shapes(kw):
    base = dict(img_size=16, in_channels=3, num_classes=7, layers=2, mlp_ratio=4, pooling_stat="0011")
    cfg = ModelConfig(**{**base, **kw})
    seed = 500 + EXTRA.index(kw)
    for x in make_inputs(cfg, seed, batch=3).values():
        compare(cfg, x, seed)


# ---------------------------------------------------------------------------------------------
# an upstream-style checkpoint
# ---------------------------------------------------------------------------------------------

def _parse_keys_file(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    keys = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in re.findall(r"\d+", shape))
        keys[name] = (dims, dtype)
    return keys


CKPT_ARGS = dict(model="sdt", spike_mode="lif", dvs_mode=False, TET=False, attention_mode="STAtten",
                 num_heads=4, num_classes=10, img_size=32, pooling_stat="0011", time_steps=4,
                 chunk_size=2, layer=2, dim=32, mlp_ratio=4, in_channels=3, patch_size=None,
                 dataset="torch/cifar10")


def _reference_from_args(a: argparse.Namespace, attention_mode: str) -> ref.SpikeDrivenTransformer:
    # upstream train.py: patch_size None is dropped by timm.create_model -> the default is used, and
    # attention_mode is never passed (the model default "STAtten" applies).
    return ref.sdt(img_size_h=a.img_size, img_size_w=a.img_size, in_channels=a.in_channels,
                   num_classes=a.num_classes, embed_dims=a.dim, num_heads=a.num_heads,
                   mlp_ratios=a.mlp_ratio, depths=a.layer, T=a.time_steps, chunk_size=a.chunk_size,
                   pooling_stat=a.pooling_stat, spike_mode=a.spike_mode, dvs_mode=a.dvs_mode,
                   TET=a.TET, attention_mode=attention_mode)


def _config_from_args(a: argparse.Namespace, attention: str) -> ModelConfig:
    return ModelConfig(attention=attention, img_size=a.img_size, in_channels=a.in_channels,
                       num_classes=a.num_classes, dim=a.dim, num_heads=a.num_heads, layers=a.layer,
                       mlp_ratio=a.mlp_ratio, time_steps=a.time_steps, chunk_size=a.chunk_size,
                       pooling_stat=a.pooling_stat, spike_mode=a.spike_mode, dvs_mode=a.dvs_mode,
                       tet=a.TET)


def test_reference_state_dict_matches_upstream_checkpoint_layout():
    """The re-derivation has exactly the keys/shapes/dtypes of a real upstream checkpoint."""
    if not KEYS_FILE.exists():
        pytest.skip(f"{KEYS_FILE} not available")
    want = _parse_keys_file(KEYS_FILE)
    a = argparse.Namespace(**CKPT_ARGS)
    got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", ""))
           for k, v in _reference_from_args(a, "STAtten").state_dict().items()}
    assert got == want
    # and so does ours
    ours = {k: (tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in build_model(_config_from_args(a, "STAtten")).state_dict().items()}
    assert ours == want


def _write_upstream_checkpoint(path: Path, reference: nn.Module, args: argparse.Namespace) -> None:
    """What timm's CheckpointSaver writes in upstream train.py (keys as in upstream_checkpoint_keys.txt)."""
    torch.save({"arch": "sdt", "args": args, "epoch": 299, "metric": 12.5, "version": 2,
                "optimizer": {"state": {}, "param_groups": []},
                "state_dict": reference.state_dict()}, path)


@pytest.mark.parametrize("attention", ["STAtten", "SDT"])
def test_upstream_style_checkpoint_gives_equal_outputs(tmp_path, attention):
    """A STAtten-repository checkpoint written from the REFERENCE loads into ours and agrees.

    The direction is the reverse of the grid tests: the state dict originates upstream-side. It is
    loaded twice: the plain state_dict route (``load_state_dict(strict=True)``) and our checkpoint
    reader ``snncompile.zoo.checkpoint.load_checkpoint``. An upstream STAtten checkpoint is always an
    STAtten model; running it as SDT is the user override (``attention="SDT"``) meant for
    Spike-Driven Transformer repository checkpoints, compared against that repository's model.
    """
    from snncompile.zoo.checkpoint import load_checkpoint

    a = argparse.Namespace(**CKPT_ARGS)
    writer = _reference_from_args(a, "STAtten")
    cal = torch.randn(4, a.in_channels, a.img_size, a.img_size, generator=torch.Generator().manual_seed(5))
    randomise_(writer, seed=77, calibrate=lambda: ref.run(writer, cal * 1.5))
    path = tmp_path / "model_best.pth.tar"
    _write_upstream_checkpoint(path, writer, a)

    reference = writer if attention == "STAtten" else ref.sdt(
        repository="SDT", img_size_h=a.img_size, img_size_w=a.img_size, in_channels=a.in_channels,
        num_classes=a.num_classes, embed_dims=a.dim, num_heads=a.num_heads, mlp_ratios=a.mlp_ratio,
        depths=a.layer, T=a.time_steps, pooling_stat=a.pooling_stat, spike_mode=a.spike_mode,
        dvs_mode=a.dvs_mode, TET=a.TET)
    reference.load_state_dict(writer.state_dict(), strict=True)

    raw = torch.load(path, map_location="cpu", weights_only=False)
    cfg = _config_from_args(raw["args"], attention)
    x = make_inputs(cfg, 77, batch=4)["static"]
    rates = compare(cfg, x, seed=77, state_dict=raw["state_dict"], reference=reference)
    assert 0.0 < rates["head_lif"] < 1.0

    loaded = load_checkpoint(path, attention=None if attention == "STAtten" else attention)
    assert loaded.config == cfg, (loaded.config, cfg)
    compare(cfg, x, seed=77, reference=reference, ours=loaded.model)


def test_sdt_repository_plif_dvs_checkpoint(tmp_path):
    """A Spike-Driven Transformer repository checkpoint (args without attention_mode) in plif + DVS +
    TET mode: every neuron is parametric there, so the file carries ``w`` for the never-called
    ``rpe_lif`` / ``attn_lif`` too; our reader must drop exactly those and reproduce the reference."""
    from snncompile.zoo.checkpoint import load_checkpoint

    a = argparse.Namespace(model="sdt", spike_mode="plif", dvs_mode=True, TET=True, num_heads=4,
                           num_classes=10, img_size=32, pooling_stat="0011", time_steps=4, layer=2,
                           dim=32, mlp_ratio=4, in_channels=2, patch_size=None, dataset="cifar10-dvs")
    reference = ref.sdt(repository="SDT", img_size_h=a.img_size, img_size_w=a.img_size,
                        in_channels=a.in_channels, num_classes=a.num_classes, embed_dims=a.dim,
                        num_heads=a.num_heads, mlp_ratios=a.mlp_ratio, depths=a.layer, T=a.time_steps,
                        pooling_stat=a.pooling_stat, spike_mode=a.spike_mode, dvs_mode=a.dvs_mode,
                        TET=a.TET)
    g = torch.Generator().manual_seed(6)
    cal = torch.randint(0, 4, (4, a.time_steps, a.in_channels, a.img_size, a.img_size), generator=g).float()
    randomise_(reference, seed=78, calibrate=lambda: ref.run(reference, cal))
    dead = sorted(k for k in reference.state_dict() if DEAD_UPSTREAM_KEY.match(k))
    assert dead == ["block.0.attn.attn_lif.w", "block.1.attn.attn_lif.w", "patch_embed.rpe_lif.w"]
    path = tmp_path / "checkpoint-199.pth.tar"
    _write_upstream_checkpoint(path, reference, a)

    loaded = load_checkpoint(path)
    cfg = loaded.config
    assert (cfg.attention, cfg.spike_mode, cfg.dvs_mode, cfg.tet) == ("SDT", "plif", True, True)
    for key in dead:
        assert any(key in note for note in loaded.notes), loaded.notes
    for x in make_inputs(cfg, 78, batch=3).values():
        rates = compare(cfg, x, seed=78, reference=reference, ours=loaded.model)
        assert 0.0 < rates["head_lif"] < 1.0


# ---------------------------------------------------------------------------------------------
# the reference itself: quirks it must keep
# ---------------------------------------------------------------------------------------------

def test_reference_unknown_attention_mode_adds_shortcut_spikes():
    """Upstream quirk: the ``not in ["STAtten, SDT"]`` guard lets any other mode through silently,
    and the branch output is then the shortcut spike tensor: U + SN(U)."""
    attn = ref.MS_SSA_Conv(16, num_heads=2, attention_mode="SSA")
    randomise_(attn, seed=3)
    attn.eval()
    u = torch.randn(4, 2, 16, 4, 4) * 2
    ref.reset_net(attn)
    with torch.no_grad():
        out, _, _ = attn(u)
        ref.reset_net(attn)
        s = attn.shortcut_lif(u)
    assert torch.equal(out, u + s)


def test_reference_neuron_matches_closed_form():
    """The re-derived SpikingJelly LIF equals the spec's tau*V current-free form (models.md §1.3)."""
    torch.manual_seed(0)
    x = torch.randn(8, 1000) * 2
    for th in (1.0, 0.5):
        n = ref.MultiStepLIFNode(tau=2.0, v_threshold=th)
        s = n(x)
        v = torch.zeros(1000)
        for t in range(8):
            h = v / 2 + x[t]
            st = (h >= 2 * th).float()
            assert torch.equal(st, s[t])
            v = h * (1 - st)
    # PLIF state persists across calls until reset_net (SpikingJelly MemoryModule semantics)
    p = ref.MultiStepParametricLIFNode(init_tau=2.0)
    first = p(x)
    assert isinstance(p.v, torch.Tensor)
    ref.reset_net(p)
    assert p.v == 0.0 and torch.equal(p(x), first)
    ours_plif = MultiStepParametricLIF()
    with torch.no_grad():
        ours_plif.w.fill_(0.7)
        p.w.fill_(0.7)
    ref.reset_net(p)
    assert torch.equal(ours_plif(x), p(x))
