"""The Spike-Driven Transformer V2 (Meta-SpikeFormer) backbone: the float model against the re-derived upstream
forward (``tests/upstream_sdt_v2.py``), and loading upstream ``main_finetune.py`` checkpoints."""
from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from snncompile.config import ModelConfig
from snncompile.nn.backbones import build_model
from snncompile.nn.record import record_spikes
from snncompile.nn.sdt_v2 import BNAndPad, RepConv
from snncompile.zoo.checkpoint import load_checkpoint
from snncompile.zoo.torchfile import CheckpointError

try:
    from . import upstream_sdt_v2 as up
except ImportError:
    import upstream_sdt_v2 as up


def v2_cfg(**kw) -> ModelConfig:
    base = dict(backbone="sdt-v2", attention="SSA", dim=32, num_heads=2, layers=3, img_size=64, time_steps=4,
                num_classes=10)
    base.update(kw)
    return ModelConfig(**base)


def upstream_twin(cfg: ModelConfig):
    """The re-derived upstream model of ``cfg``'s sizes, with active random weights."""
    model = up.build((cfg.dim // 4, cfg.dim // 2, cfg.dim, cfg.dim * 5 // 4), time_steps=cfg.time_steps,
                     kd=cfg.kd_head, stage3_depth=cfg.layers - 2, num_classes=cfg.num_classes,
                     in_channels=cfg.in_channels, num_heads=cfg.num_heads)
    return up.active_weights(model)


def upstream_spikes(model, x):
    spikes = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: spikes.__setitem__(name, out))
             for name, m in model.named_modules() if isinstance(m, up.MultiStepLIFNode)]
    try:
        with torch.no_grad():
            logits = up.run(model, x)
    finally:
        for h in hooks:
            h.remove()
    return logits, spikes


@pytest.mark.parametrize("kw", [dict(), dict(kd_head=True, time_steps=2), dict(time_steps=1, layers=4),
                                dict(dim=64, num_heads=4, num_classes=1000)])
def test_matches_upstream_every_spike_and_logits(kw):
    """Same state dict, same input: every neuron (under its upstream module path) and the logits bit-equal."""
    cfg = v2_cfg(**kw)
    ref = upstream_twin(cfg)
    ours = build_model(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(1))
    want_logits, want = upstream_spikes(ref, x)
    with torch.no_grad(), record_spikes(ours) as got:
        logits = ours(x)
    assert list(got) == list(want)  # the same neurons, in forward order
    assert len(want) == 4 * 4 + 4 + 7 * cfg.layers + 1  # conv blocks, downsamplings, blocks, head
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert torch.equal(logits, want_logits)
    rates = [float(got[f"block{s}.0.attn.attn_lif"].mean()) for s in (3, 4)]
    assert max(rates) > 0.02 and max(rates) < 0.5, rates  # the attention threshold is exercised


def test_attn_lif_fires_on_exact_threshold():
    """Q (K^T V) * 0.125 of spikes are exact multiples of 1/8: a first-step input of exactly 1.0 charges the
    membrane to exactly 0.5, which fires (``>=``)."""
    cfg = v2_cfg()
    attn = build_model(cfg).block3[0].attn
    x = torch.tensor([1.0, 0.875, 1.125]).reshape(1, 3)
    assert attn.attn_lif(x).tolist() == [[1.0, 0.0, 1.0]]


def test_bn_and_pad_border_is_upstream_value_not_batchnorm_of_zero():
    """The border holds ``beta - mean * gamma / sqrt(var + eps)`` in upstream's float order; BN of a zero input
    rounds differently for some channels (why the float model keeps RepConv unfolded)."""
    torch.manual_seed(0)
    layer = BNAndPad(1, 256).eval()
    up_layer = up.BNAndPadLayer(1, 256).eval()
    for t in (layer.bn.weight, layer.bn.bias, layer.bn.running_mean):
        t.data.normal_()
    layer.bn.running_var.data.uniform_(0.1, 2.0)
    up_layer.load_state_dict(layer.state_dict())
    x = torch.randn(2, 256, 3, 3)
    out = layer(x)
    assert torch.equal(out, up_layer(x))
    bn_of_zero = F.batch_norm(torch.zeros(1, 256), layer.bn.running_mean, layer.bn.running_var, layer.bn.weight,
                              layer.bn.bias, False, 0.0, layer.bn.eps)[0]
    assert not torch.equal(out[0, :, 0, 0], bn_of_zero)
    assert torch.allclose(out[0, :, 0, 0], bn_of_zero, rtol=0, atol=1e-5)


def test_repconv_is_one_3x3_conv_with_bias_in_exact_arithmetic():
    """conv1x1 -> BN -> pad(BN(0)) -> dw3x3 -> conv1x1 -> BN equals one padded 3x3 conv plus bias (float64)."""
    torch.manual_seed(0)
    rep = up.active_weights(RepConv(6)).double()
    body = rep.body
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)

    def affine(bn):
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return s, bn.bias - bn.running_mean * s

    s1, b1 = affine(body[1].bn)
    s2, b2 = affine(body[2][2])
    pw1, dw, pw2 = body[0].weight[:, :, 0, 0], body[2][0].weight[:, 0], body[2][1].weight[:, :, 0, 0]
    weight = torch.einsum("oc,ckl,ci->oikl", pw2 * s2[:, None], dw * s1[:, None, None], pw1)
    bias = s2 * (pw2 @ (dw.sum((1, 2)) * b1)) + b2
    folded = F.conv2d(x, weight, bias, padding=1)
    assert torch.allclose(rep(x), folded, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# upstream checkpoints
# ---------------------------------------------------------------------------------------------------------------

def _write(tmp_path, cfg: ModelConfig, **args):
    model = upstream_twin(cfg)
    path = tmp_path / "checkpoint-199.pth"
    up.save_like_upstream(path, model, up.finetune_args(**args))
    return path, model


@pytest.mark.parametrize("kd", [False, True])
def test_loads_finetune_checkpoint_and_reproduces_upstream(tmp_path, kd):
    cfg = v2_cfg(kd_head=kd, num_heads=8, num_classes=1000, layers=4)
    path, ref = _write(tmp_path, cfg, model="metaspikformer_8_384", time_steps=4, kd=kd, input_size=64)
    loaded = load_checkpoint(path)
    got = loaded.config
    assert (got.backbone, got.dim, got.layers, got.num_heads, got.time_steps, got.img_size, got.kd_head,
            got.num_classes, got.mlp_ratio) == ("sdt-v2", 32, 4, 8, 4, 64, kd, 1000, 4)
    assert any("has dim 384, the weights have dim 32" in n for n in loaded.notes)
    assert loaded.metrics["epoch"] == 199
    x = torch.randn(2, 3, 64, 64)
    want, _ = upstream_spikes(ref, x)
    assert torch.equal(loaded.model.predict_logits(x), want)


def test_edited_factory_assumes_eight_heads_with_a_note_and_user_overrides(tmp_path):
    cfg = v2_cfg(num_heads=4)
    path, _ = _write(tmp_path, cfg, model="metaspikformer_8_32", time_steps=2, input_size=64)
    loaded = load_checkpoint(path)
    assert loaded.config.num_heads == 8 and loaded.config.time_steps == 2
    assert any("not an upstream factory" in n for n in loaded.notes)
    loaded = load_checkpoint(path, config={"num_heads": 4, "time_steps": 4})
    assert (loaded.config.num_heads, loaded.config.time_steps) == (4, 4)


def test_missing_time_steps_is_upstreams_default_with_a_note(tmp_path):
    path, _ = _write(tmp_path, v2_cfg())
    obj = torch.load(path, weights_only=False)
    del obj["args"].time_steps
    torch.save(obj, path)
    loaded = load_checkpoint(path, config={"img_size": 64})
    assert loaded.config.time_steps == 1
    assert any("upstream's default is 1" in n for n in loaded.notes)


def test_bare_state_dict_needs_image_size_and_steps(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(upstream_twin(v2_cfg()).state_dict(), path)
    with pytest.raises(CheckpointError, match="cannot tell the model's img_size, time_steps, num_heads"):
        load_checkpoint(path, config={"backbone": "sdt-v2"})
    loaded = load_checkpoint(path, config={"backbone": "sdt-v2", "img_size": 64, "time_steps": 4, "num_heads": 2})
    assert (loaded.config.dim, loaded.config.layers, loaded.config.num_classes) == (32, 3, 10)


def test_wrong_stage_four_depth_is_one_clear_error(tmp_path):
    path, model = _write(tmp_path, v2_cfg())
    obj = torch.load(path, weights_only=False)
    obj["model"] = {k.replace("block4.1.", "block4.2."): v for k, v in obj["model"].items()}
    obj["model"].update({k.replace("block4.2.", "block4.1."): v for k, v in obj["model"].items()
                         if k.startswith("block4.2.")})
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="3 stage-4 blocks"):
        load_checkpoint(path)


def test_other_backbones_files_are_not_claimed():
    from snncompile.zoo.upstream_sdt_v2 import SDT_V2
    assert not SDT_V2.claims({"state_dict": {}}, vars(argparse.Namespace(model="sdt")),
                             {"patch_embed.proj_conv.weight": torch.zeros(1)})
    assert SDT_V2.claims({"model": {}}, {"model": "metaspikformer_8_512"}, {})
    v3_keys = {key: torch.zeros(1)
               for key in ("downsample1_1.encode_conv.weight", "ConvBlock1_1.0.Conv.pwconv1.0.weight")}
    assert not SDT_V2.claims({"model": {}}, {"model": "Efficient_Spiking_Transformer_n"}, v3_keys)  # SDT-V3
    assert not SDT_V2.claims({"model": {}}, None, v3_keys)
    assert SDT_V2.claims({"model": {}}, None, {"ConvBlock1_1.0.Conv.pwconv1.weight": torch.zeros(1)})


@pytest.mark.parametrize("kw, message", [
    (dict(img_size=40), "img_size: 40 is not divisible by 16"),
    (dict(layers=2), "layers >= 3"),
    (dict(attention="STAtten"), "sdt-v2's attention is SSA"),
    (dict(dim=48, num_heads=8), "5\\*dim/4 = 60 is not divisible by num_heads=8"),
])
def test_config_checks(kw, message):
    with pytest.raises(ValueError, match=message):
        build_model(v2_cfg(**kw))


@pytest.mark.parametrize("name, millions", [("sdt-v2-imagenet-8-384", 31.33), ("sdt-v2-imagenet-8-512", 55.35),
                                            ("sdt-v2-imagenet-8-768", 123.74)])
def test_zoo_configs_are_the_upstream_factories(name, millions):
    """The zoo YAMLs build upstream's factories: 8-512 has the 55.4 M parameters models.md §2.11 gives, and every
    parameter name and shape of the re-derived factory."""
    from snncompile.zoo.registry import find_entry
    cfg = find_entry(name).model
    with torch.device("meta"):
        ours = build_model(cfg).state_dict()
        factory = up.build(up.FACTORIES[f"metaspikformer_8_{cfg.dim}"], time_steps=4).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in factory.items()}
    assert round(sum(v.numel() for k, v in ours.items() if "running" not in k and "num_batches" not in k) / 1e6,
                 2) == millions


def test_gpu_tagged_storages_load_on_the_cpu(tmp_path, monkeypatch):
    """Upstream trains on GPUs: every storage of its file is tagged ``cuda:0``; the reader puts them on the CPU."""
    cfg = v2_cfg()
    ref = upstream_twin(cfg)
    path = tmp_path / "checkpoint-199.pth"
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        up.save_like_upstream(path, ref, up.finetune_args(model="metaspikformer_8_32", time_steps=4, input_size=64))
    assert b"cuda:0" in path.read_bytes()
    loaded = load_checkpoint(path, config={"num_heads": 2})
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.model.predict_logits(x), upstream_spikes(ref, x)[0])


def test_a_kd_flag_the_weights_contradict_is_noted_and_a_tensor_in_args_is_one_error(tmp_path):
    path, _ = _write(tmp_path, v2_cfg(num_heads=8), model="metaspikformer_8_32", time_steps=2, input_size=64,
                     kd=True)
    loaded = load_checkpoint(path)
    assert not loaded.config.kd_head and any("args.kd is True but the weights lack head_kd" in n for n in loaded.notes)
    obj = torch.load(path, weights_only=False)
    obj["args"].kd = torch.ones(3)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="args.kd is a Tensor"):
        load_checkpoint(path)
