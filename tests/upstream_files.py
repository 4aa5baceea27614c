"""Test support: small live models and checkpoint files written as upstream timm ``CheckpointSaver`` does."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from snncompile.config import ModelConfig
from snncompile.nn.backbones import build_model


def small_cfg(**kw) -> ModelConfig:
    base = dict(dim=32, num_heads=4, layers=2, img_size=16, time_steps=4, chunk_size=2)
    base.update(kw)
    return ModelConfig(**base)


def trained_like(cfg: ModelConfig, seed: int = 0):
    """A model whose every parameter and BN statistic differs from a fresh one."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.5 + 0.75 if name.endswith("running_var")
                        else torch.randn_like(t) * 0.3)
            else:
                t.fill_(17)
    return model.eval()


def upstream_args(**overrides) -> argparse.Namespace:
    args = dict(model="sdt", spike_mode="lif", dvs_mode=False, TET=False, attention_mode="STAtten",
                num_heads=4, num_classes=10, img_size=32, pooling_stat="0011", time_steps=4,
                chunk_size=2, layer=2, dim=32, mlp_ratio=4, in_channels=3, patch_size=None,
                dataset="torch/cifar10", eval_metric="top1")
    args.update(overrides)
    return argparse.Namespace(**{k: v for k, v in args.items() if v is not DROP})


DROP = object()


def write_upstream(path, model, args, *, module_prefix=False, ema=False):
    """Write ``model`` as timm's CheckpointSaver does (train.py of STAtten / Spike-Driven Transformer)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer.step()
    with torch.no_grad():  # keep the weights the test compares against; the AdamW state stays real
        for k, v in model.state_dict().items():
            v.copy_(before[k])
    state_dict = model.state_dict()
    if module_prefix:
        state_dict = {f"module.{k}": v for k, v in state_dict.items()}
    save_state = {
        "epoch": 199,
        "arch": getattr(args, "model", "sdt"),
        "state_dict": state_dict,
        "optimizer": optimizer.state_dict(),
        "version": 2,
        "args": args,
        "metric": np.float64(93.25),
    }
    if ema:
        save_state["state_dict_ema"] = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    torch.save(save_state, path)
    return path
