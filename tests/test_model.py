"""The Spike-Driven-Transformer backbone and its configuration (models.md §2, §3.4, §3.5, §11)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED
import torch
import torch.nn.functional as F

from snncompile.nn.neurons import MultiStepLIF, MultiStepParametricLIF
from snncompile.nn.backbones import build_model
from snncompile.nn.sdt import SpikeDrivenTransformer
from snncompile.config import ATTENTION_MODES, ConfigError, ModelConfig, parse_entry

MODES = ["SDT", "STAtten", "SSA", "A2OS2A", "DS2TA"]
KEYS_FILE = SHARED / "spec" / "upstream_checkpoint_keys.txt"
IMG, TSTEPS, CLASSES = 16, 4, 10


def small_cfg(mode="STAtten", dvs=False, **kw):
    base = dict(attention=mode, img_size=IMG, in_channels=2 if dvs else 3, num_classes=CLASSES, dim=32,
                num_heads=4, layers=2, time_steps=TSTEPS, chunk_size=2, pooling_stat="0011", dvs_mode=dvs)
    base.update(kw)
    return ModelConfig(**base)


def small_model(mode="STAtten", dvs=False, seed=0, **kw):
    torch.manual_seed(seed)
    return SpikeDrivenTransformer(small_cfg(mode, dvs, **kw))


def live_model(mode="STAtten", dvs=False, seed=0, **kw):
    """A small model in eval mode whose neurons actually fire.

    With the fresh initialisation (conv std 0.02, BN running stats 0/1) nothing spikes in eval mode and
    every input gives the same logits; one train-mode pass with a cumulative BN average sets realistic
    running statistics, and positive Q/K/V BN biases make the attention neurons fire.
    """
    model = small_model(mode, dvs, seed, **kw)
    with torch.no_grad():
        for blk in model.block:
            for name in ("q", "v") if mode == "A2OS2A" else ("q", "k", "v"):
                getattr(blk.attn, f"{name}_bn").bias.fill_(1.0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        model.train()
        model(_input(model.cfg, batch=4, seed=seed + 1000))
    return model.eval()


def _input(cfg, batch=2, events=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    events = cfg.dvs_mode if events is None else events
    if events:
        return torch.rand(batch, cfg.time_steps, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g) * 2
    return torch.rand(batch, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g) * 2


# ------------------------------------------------------------------------------------------------
# shapes and inputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dvs", [False, True], ids=["static", "dvs"])
@pytest.mark.parametrize("mode", MODES)
def test_output_shapes(mode, dvs):
    model = live_model(mode, dvs)
    x = _input(model.cfg)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, CLASSES)
    assert not torch.equal(out[0], out[1])  # the logits depend on the input
    assert torch.isfinite(out).all()
    assert model.predict_logits(x).shape == (2, CLASSES)
    torch.testing.assert_close(model.predict_logits(x), out, rtol=0, atol=0)

    tet = small_model(mode, dvs, tet=True).eval()
    tet.load_state_dict(model.state_dict())
    with torch.no_grad():
        per_step = tet(x)
    assert per_step.shape == (TSTEPS, 2, CLASSES)
    assert tet.predict_logits(x).shape == (2, CLASSES)
    # TET only keeps the time axis: its mean is the non-TET output of the same weights
    assert torch.equal(per_step.mean(0), out)
    assert torch.equal(tet.predict_logits(x), out)


@pytest.mark.parametrize("mode", MODES)
def test_static_input_is_repeated_over_time(mode):
    model = live_model(mode)
    x = _input(model.cfg)
    frames = x.unsqueeze(1).repeat(1, TSTEPS, 1, 1, 1)
    with torch.no_grad():
        assert torch.equal(model(x), model(frames))
    tm = model.time_major_input(x)
    assert tm.shape == (TSTEPS, 2, 3, IMG, IMG)
    assert all(torch.equal(tm[t], x) for t in range(TSTEPS))


def test_event_input_is_transposed_to_time_major():
    model = small_model("STAtten", dvs=True)
    x = _input(model.cfg)
    tm = model.time_major_input(x)
    assert tm.shape == (TSTEPS, 2, 2, IMG, IMG)
    for t in range(TSTEPS):
        assert torch.equal(tm[t], x[:, t])


def test_event_frames_change_the_output():
    # timesteps are not collapsed: permuting the frames changes the logits
    model = live_model("STAtten", dvs=True)
    x = _input(model.cfg)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x.flip(1)))


@pytest.mark.parametrize("shape", [(2, 1, IMG, IMG), (2, 3, IMG + 1, IMG), (3, IMG, IMG), (2, TSTEPS, 3, 8, 8),
                                   (2, TSTEPS, 2, IMG, IMG), (1, 2, TSTEPS, 3, IMG, IMG)])
def test_wrong_input_shape_names_expected_shapes(shape):
    model = small_model("STAtten")
    with pytest.raises(ValueError) as err:
        model(torch.zeros(shape))
    msg = str(err.value)
    assert f"[B, 3, {IMG}, {IMG}]" in msg
    assert f"[B, T, 3, {IMG}, {IMG}]" in msg
    assert str(tuple(shape)) in msg


@pytest.mark.parametrize("steps", [TSTEPS - 1, TSTEPS + 2, 1])
def test_wrong_number_of_timesteps_raises(steps):
    model = small_model("STAtten")
    with pytest.raises(ValueError, match=rf"{steps} timesteps.*time_steps={TSTEPS}"):
        model(torch.zeros(2, steps, 3, IMG, IMG))


# ------------------------------------------------------------------------------------------------
# checkpoint layout (upstream_checkpoint_keys.txt)
# ------------------------------------------------------------------------------------------------

def _upstream_keys():
    if not KEYS_FILE.is_file():
        pytest.skip(f"{KEYS_FILE} (the shared spec) is not available on this machine")
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in re.findall(r"\d+", shape)), dtype))
    assert len(rows) > 100
    return rows


def _keys_of(model):
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]


def _upstream_cfg(**kw):
    base = dict(attention="STAtten", dim=32, num_heads=4, layers=2, in_channels=3, num_classes=10,
                pooling_stat="0011", img_size=32, time_steps=4, chunk_size=2)
    base.update(kw)
    return ModelConfig(**base)


def test_statten_state_dict_matches_upstream_checkpoint_exactly():
    ours = _keys_of(SpikeDrivenTransformer(_upstream_cfg()))
    ref = _upstream_keys()
    assert [k for k, _, _ in ours] == [k for k, _, _ in ref]  # same keys, same order
    assert ours == ref                                         # same shapes and dtypes


@pytest.mark.parametrize("mode", ["SDT", "SSA", "A2OS2A"])
def test_other_parameter_free_modes_have_the_same_keys(mode):
    assert _keys_of(SpikeDrivenTransformer(_upstream_cfg(attention=mode))) == _upstream_keys()


def test_ds2ta_adds_only_lut_and_window_parameters():
    ref = {k for k, _, _ in _upstream_keys()}
    sd = SpikeDrivenTransformer(_upstream_cfg(attention="DS2TA")).state_dict()
    extra = {k: tuple(v.shape) for k, v in sd.items() if k not in ref}
    expected = {}
    for i in range(2):
        expected[f"block.{i}.attn.lut.table"] = (4, 32 // 4 + 1)
        for name in "q", "k", "v", "proj":
            expected[f"block.{i}.attn.{name}_window.log_tau"] = ()
    assert extra == expected
    assert ref <= set(sd)


def test_plif_adds_exactly_the_mlp_and_head_decays():
    ref = {k for k, _, _ in _upstream_keys()}
    model = SpikeDrivenTransformer(_upstream_cfg(spike_mode="plif"))
    sd = model.state_dict()
    extra = set(sd) - ref
    assert extra == {"block.0.mlp.fc1_lif.w", "block.0.mlp.fc2_lif.w", "block.1.mlp.fc1_lif.w",
                     "block.1.mlp.fc2_lif.w", "head_lif.w"}
    assert ref <= set(sd)
    assert all(sd[k].shape == () and sd[k].item() == 0.0 for k in extra)
    # models.md §1.5: the stem and attention neurons stay plain LIF under plif
    for name, m in model.named_modules():
        if name.endswith("_lif") or name == "head_lif":
            is_plif = name == "head_lif" or ".mlp." in name
            assert isinstance(m, MultiStepParametricLIF) == is_plif, name
            assert isinstance(m, MultiStepLIF)


def test_upstream_state_dict_loads_strictly():
    src = SpikeDrivenTransformer(_upstream_cfg())
    dst = SpikeDrivenTransformer(_upstream_cfg(attention="SDT"))
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# ------------------------------------------------------------------------------------------------
# parameter counts (models.md §2.8)
# ------------------------------------------------------------------------------------------------

def closed_form_params(D, H, L, C, in_ch, r=4):
    sps = 9 * (in_ch * D // 8 + D * D // 32 + D * D // 8 + D * D // 2 + D * D) + 2 * (D // 8 + D // 4 + D // 2 + 2 * D)
    block = (3 * (D * D + 2 * D) + H * H + (D * D + D + 2 * D) + (r * D * D + r * D + 2 * r * D)
             + (r * D * D + D + 2 * D))
    head = D * C + C
    return sps + L * block + head


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_closed_form_reproduces_spec_table():
    assert closed_form_params(256, 8, 2, 10, 3) == 2_567_082
    assert closed_form_params(256, 8, 2, 100, 3) == 2_590_212
    assert closed_form_params(512, 8, 2, 10, 3) == 10_233_546
    assert closed_form_params(512, 8, 2, 100, 3) == 10_279_716
    assert closed_form_params(256, 8, 2, 10, 2) == 2_566_794
    assert closed_form_params(256, 8, 2, 11, 2) == 2_567_051
    assert closed_form_params(256, 8, 2, 101, 2) == 2_590_181


@pytest.mark.parametrize("D,H,L,C,in_ch,expected", [
    (256, 8, 2, 10, 3, 2_567_082),    # 2-256 CIFAR-10
    (256, 8, 2, 101, 2, 2_590_181),   # 2-256 N-Caltech101
    (512, 8, 2, 100, 3, 10_279_716),  # 2-512 CIFAR-100
    (32, 4, 2, 10, 3, None),
    (64, 2, 3, 7, 1, None),
])
@pytest.mark.parametrize("mode", ["STAtten", "SDT"])
def test_parameter_count(D, H, L, C, in_ch, expected, mode):
    cfg = ModelConfig(attention=mode, dim=D, num_heads=H, layers=L, num_classes=C, in_channels=in_ch)
    n = _count(build_model(cfg))
    assert n == closed_form_params(D, H, L, C, in_ch)
    if expected is not None:
        assert n == expected


def test_parameter_count_plif_and_ds2ta_extras():
    D, H, L = 32, 4, 2
    base = closed_form_params(D, H, L, 10, 3)
    assert _count(build_model(ModelConfig(dim=D, num_heads=H, layers=L, spike_mode="plif"))) == base + 2 * L + 1
    d = D // H
    ds2ta = build_model(ModelConfig(attention="DS2TA", dim=D, num_heads=H, layers=L))
    assert _count(ds2ta) == base + L * (H * (d + 1) + 4)


# ------------------------------------------------------------------------------------------------
# configuration validation
# ------------------------------------------------------------------------------------------------

def _problem_fields(cfg):
    return [p.split(":")[0] for p in cfg.problems()]


def test_default_and_small_configs_are_valid():
    assert ModelConfig().problems() == []
    for mode in MODES:
        assert small_cfg(mode).problems() == []
        assert small_cfg(mode, dvs=True).problems() == []
    assert tuple(ATTENTION_MODES) == tuple(MODES)


def test_statten_needs_whole_blocks():
    cfg = small_cfg("STAtten", time_steps=4, chunk_size=3)
    assert _problem_fields(cfg) == ["chunk_size"]
    assert "time_steps=4" in cfg.problems()[0] and "chunk_size=3" in cfg.problems()[0]
    with pytest.raises(ValueError, match="chunk_size"):
        SpikeDrivenTransformer(cfg)
    # the block size only matters for STAtten
    assert small_cfg("SDT", time_steps=4, chunk_size=3).problems() == []
    assert small_cfg("STAtten", time_steps=6, chunk_size=3).problems() == []


@pytest.mark.parametrize("stat", ["001", "00111", "0021", "ab11", ""])
def test_bad_pooling_stat(stat):
    cfg = small_cfg(pooling_stat=stat)
    assert "pooling_stat" in _problem_fields(cfg)
    with pytest.raises(ValueError, match="pooling_stat"):
        SpikeDrivenTransformer(cfg)


def test_img_size_must_survive_the_pools():
    assert _problem_fields(small_cfg(img_size=18, pooling_stat="0011")) == ["img_size"]
    assert small_cfg(img_size=20, pooling_stat="0011").problems() == []


def test_dim_not_divisible_by_heads():
    cfg = small_cfg(dim=40, num_heads=3)
    assert _problem_fields(cfg) == ["dim"]
    assert "num_heads=3" in cfg.problems()[0]
    cfg = small_cfg(dim=36, num_heads=8)  # neither /8 (stem widths) nor /heads
    assert _problem_fields(cfg) == ["dim", "dim"]
    with pytest.raises(ValueError, match="num_heads"):
        SpikeDrivenTransformer(small_cfg(dim=40, num_heads=3))


@pytest.mark.parametrize("mode", ["SDSA", "sdt", "statten", "", "Spikformer"])
def test_unknown_attention_rejected(mode):
    cfg = small_cfg(mode)
    assert _problem_fields(cfg) == ["attention"]
    with pytest.raises(ValueError, match="attention"):
        SpikeDrivenTransformer(cfg)


def test_unknown_spike_mode_rejected():
    assert _problem_fields(small_cfg(spike_mode="if")) == ["spike_mode"]


def test_parse_entry_reports_every_problem_at_once():
    raw = {
        "name": "broken",
        "model": {"attention": "STAtten", "time_steps": 4, "chunk_size": 3, "pooling_stat": "01",
                  "dim": 36, "num_heads": 8, "img_size": "32", "colour": "red"},
        "data": {"dataset": "mnist"},
        "train": {"lr": 0},
        "extra": 1,
    }
    with pytest.raises(ConfigError) as err:
        parse_entry(raw)
    msg = str(err.value)
    for field in ["model.chunk_size", "model.pooling_stat", "model.dim", "model.img_size", "model.colour",
                  "data.dataset", "train.lr", "extra"]:
        assert field in msg, field
    assert msg.count("model.dim") == 2  # both dim problems
    assert isinstance(err.value, ValueError)


def test_parse_entry_unknown_attention_and_missing_name():
    with pytest.raises(ConfigError) as err:
        parse_entry({"model": {"attention": "SDSA", "num_heads": 0}})
    msg = str(err.value)
    assert "model.attention" in msg and "'SDSA'" in msg
    assert "model.num_heads" in msg
    assert "name" in msg


def test_parse_entry_accepts_a_valid_dict():
    entry = parse_entry({"name": "ok", "model": {"attention": "SDT", "dim": 64, "num_heads": 4,
                                                 "ssa_scale": 1}})
    assert entry.model.attention == "SDT" and entry.model.dim == 64
    assert isinstance(entry.model.ssa_scale, float)
    assert entry.checkpoint is None


# ------------------------------------------------------------------------------------------------
# token grid and STAtten scale (models.md §3.4)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,grid,scale", [
    (dict(img_size=32, pooling_stat="0011"), 8, 1 / 8),                                     # CIFAR
    (dict(img_size=224, pooling_stat="1111"), 14, 1 / 14),                                  # ImageNet
    (dict(img_size=288, pooling_stat="1111"), 18, 1 / 18),                                  # ImageNet @288
    (dict(img_size=64, pooling_stat="0011", time_steps=16, chunk_size=4, dvs_mode=True), 16, 1 / 1024),
    (dict(img_size=64, pooling_stat="0011", time_steps=10, chunk_size=5, dvs_mode=True), 16, 1 / 1280),
    (dict(img_size=128, pooling_stat="0111"), 16, 1 / 16),                                  # Gesture
])
def test_token_grid_and_statten_scale(kw, grid, scale):
    cfg = ModelConfig(**kw)
    assert cfg.problems() == []
    assert cfg.token_grid == grid
    assert cfg.num_tokens == grid * grid
    assert cfg.statten_scale == scale


@pytest.mark.parametrize("img,stat", [(16, "0011"), (16, "1111"), (24, "0111"), (16, "0000"), (20, "1010")])
def test_stem_output_grid_matches_token_grid(img, stat):
    cfg = ModelConfig(img_size=img, pooling_stat=stat, dim=8, num_heads=2, layers=1, time_steps=2)
    model = SpikeDrivenTransformer(cfg).eval()
    with torch.no_grad():
        u = model.patch_embed(model.time_major_input(torch.rand(1, 3, img, img)))
    assert u.shape == (2, 1, 8, cfg.token_grid, cfg.token_grid)


# ------------------------------------------------------------------------------------------------
# gradients and determinism
# ------------------------------------------------------------------------------------------------

EXTRA_TRAINABLE = {
    "DS2TA": {f"block.{i}.attn.{n}" for i in range(2)
              for n in ("lut.table", "q_window.log_tau", "k_window.log_tau", "v_window.log_tau",
                        "proj_window.log_tau")},
}


@pytest.mark.parametrize("dvs", [False, True], ids=["static", "dvs"])
@pytest.mark.parametrize("mode", MODES)
def test_backward_reaches_every_live_parameter(mode, dvs):
    model = small_model(mode, dvs, seed=3).train()
    # drive the attention a little harder than the tiny random init does, so that attn_lif fires
    # and every parameter gets a non-zero gradient (not only a graph edge)
    with torch.no_grad():
        for blk in model.block:
            for name in ("q", "v") if mode == "A2OS2A" else ("q", "k", "v"):
                getattr(blk.attn, f"{name}_bn").bias.fill_(1.0)
    x = _input(model.cfg, seed=4)
    loss = F.cross_entropy(model(x), torch.tensor([1, 7]))
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    dead = {n for n, p in model.named_parameters() if p.grad is None}
    assert dead == {"block.0.attn.talking_heads.weight", "block.1.attn.talking_heads.weight"}
    zero = {n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()}
    assert zero == set()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    expected = {k for k, _, _ in _upstream_keys() if k.endswith(("weight", "bias"))
                and "running" not in k} | EXTRA_TRAINABLE.get(mode, set())
    assert set(names) == expected


def test_backward_reaches_plif_decays():
    model = small_model("STAtten", spike_mode="plif").train()
    F.cross_entropy(model(_input(model.cfg)), torch.tensor([0, 1])).backward()
    for name in ("block.0.mlp.fc1_lif.w", "block.1.mlp.fc2_lif.w", "head_lif.w"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.item() != 0.0, name


@pytest.mark.parametrize("mode", MODES)
def test_eval_mode_is_deterministic_and_batch_independent(mode):
    model = live_model(mode, seed=5)
    x = _input(model.cfg, batch=3, seed=6)
    with torch.no_grad():
        a = model(x)
        b = model(x)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
    # batching does not mix samples (float64, so that no spike flips on a last-bit difference)
    wide, xd = model.double(), x.double()
    with torch.no_grad():
        batched = wide(xd)
        single = torch.cat([wide(xd[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(single, batched, rtol=1e-9, atol=1e-9)
    model.float()
    # two models built from the same seed are identical
    again = live_model(mode, seed=5)
    with torch.no_grad():
        assert torch.equal(again(x), a)
        assert torch.equal(model(x), a)


def test_eval_forward_has_no_hidden_state():
    model = live_model("STAtten", seed=7)
    x = _input(model.cfg, seed=8)
    with torch.no_grad():
        before = model(x)
        model(x * 5)  # eval mode: BN statistics frozen, neurons stateless
        assert torch.equal(model(x), before)
