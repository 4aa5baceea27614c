"""Checkpoints of the three Spikformer code variants (github.com/ZK-Zhou/spikformer; backbone_checkpoints.md).

- ``cifar10/train.py`` and ``imagenet/train.py``: timm ``CheckpointSaver`` files (weights under ``state_dict``).
  cifar10's ``args`` carry ``dim``, ``num_heads``, ``layer``, ``mlp_ratio``, ``time_step``; imagenet's carry no
  size at all (``arch`` is often timm's default ``'resnet101'``), its factory hard-codes 8 heads and its forward
  T = 4.
- ``cifar10dvs/train.py``: a torchvision-reference dict (weights under ``model``), ``args.T`` the time steps; the
  factory hard-codes 16 heads.

A file is recognised by its key layout, never by ``arch``: ``block.<i>.attn.q_linear`` (cifar10) or a Conv1d
``block.<i>.attn.q_conv`` whose MLP is Conv1d (cifar10dvs) or Conv2d (imagenet). The LayerNorms ``norm1``/
``norm2`` (and cifar10dvs's ``pos_embed``/``norm``) are never read by upstream's forward and are dropped.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..config import ModelConfig
from .upstream_format import FIELD_TYPES, ArchitectureGuess, UpstreamFormat, coerce, scalar, shape
from .upstream_sdt import _infer_from_shapes as sdt_shapes

# Per variant: the key of its Q projection and that key's rank, the rank of the MLP's fc1 weight.
_SIGNATURE = {"spikformer-cifar10": ("block.0.attn.q_linear.weight", 2, "block.0.mlp.fc1_linear.weight", 2),
              "spikformer-cifar10dvs": ("block.0.attn.q_conv.weight", 3, "block.0.mlp.fc1_conv.weight", 3),
              "spikformer-imagenet": ("block.0.attn.q_conv.weight", 3, "block.0.mlp.fc1_conv.weight", 4)}
# What each variant's code fixes and its file does not say: stem pooling, SSA scale, event input; and the
# factory's (hard-coded) sizes assumed, with a note, when args lack them.
_FIXED = {"spikformer-cifar10": {"pooling_stat": "0011", "ssa_scale": 0.125, "dvs_mode": False},
          "spikformer-cifar10dvs": {"pooling_stat": "1111", "ssa_scale": 0.25, "dvs_mode": True},
          "spikformer-imagenet": {"pooling_stat": "1111", "ssa_scale": 0.125, "dvs_mode": False}}
_FACTORY = {"spikformer-cifar10": {},
            "spikformer-cifar10dvs": {"num_heads": 16, "img_size": 128},
            "spikformer-imagenet": {"num_heads": 8, "img_size": 224, "time_steps": 4}}
# upstream args attribute -> ModelConfig field (cifar10 names T "time_step", cifar10dvs "T")
_ARGS_FIELDS = {"dim": "dim", "num_heads": "num_heads", "layer": "layers", "mlp_ratio": "mlp_ratio",
                "time_step": "time_steps", "T": "time_steps", "num_classes": "num_classes", "img_size": "img_size"}
_ARGS_READ = {"spikformer-cifar10": tuple(_ARGS_FIELDS), "spikformer-cifar10dvs": ("T",),
              "spikformer-imagenet": ("img_size",)}  # imagenet: num_classes is hard-coded in the factory too
_DEAD = re.compile(r"^(block\.\d+\.norm[12]\.(weight|bias)|pos_embed|norm\.(weight|bias))$")
_REQUIRED = ("attention", "img_size", "time_steps", "pooling_stat", "dim", "num_heads", "in_channels",
             "num_classes", "layers", "mlp_ratio")


def _variant_of(state_dict: dict) -> str | None:
    if not shape(state_dict, "patch_embed.rpe_conv.weight", 4):
        return None
    return next((v for v, (q, q_rank, fc1, fc1_rank) in _SIGNATURE.items()
                 if shape(state_dict, q, q_rank) and shape(state_dict, fc1, fc1_rank)), None)


def _infer_from_shapes(path: Path, state_dict: dict) -> dict:
    """ModelConfig fields the weights determine (the variant's own, too)."""
    variant = _variant_of(state_dict)
    out: dict = {} if variant is None else {"backbone": variant, **_FIXED[variant]}
    # the stem, head and block count are laid out as the SDT backbone's (spike_mode: LIF only, as upstream)
    out.update(sdt_shapes(path, state_dict))
    # the MLP's first layer as a Linear (cifar10) or Conv1d (cifar10dvs); imagenet's Conv2d is the SDT layout's
    fc1 = shape(state_dict, "block.0.mlp.fc1_linear.weight", 2) or shape(state_dict, "block.0.mlp.fc1_conv.weight", 3)
    fc1 = fc1 and fc1[0]
    if fc1 and out.get("dim") and fc1 % out["dim"] == 0:
        out["mlp_ratio"] = fc1 // out["dim"]
    return out


def _format(variant: str) -> UpstreamFormat:
    def claims(obj: dict, args: dict | None, state_dict: dict) -> bool:
        return _variant_of(state_dict) == variant

    def guess(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
        fields = _infer_from_shapes(path, state_dict)
        for attr in _ARGS_READ[variant]:
            if (args or {}).get(attr) is not None:
                name = _ARGS_FIELDS[attr]
                fields[name] = coerce(scalar(path, f"args.{attr}", args[attr]), FIELD_TYPES[name])
        for name, value in _FACTORY[variant].items():
            if name not in fields:
                fields[name] = value
                notes.append(f"{name} is not in the file: assuming {value}, hard-coded in upstream {variant}'s "
                             f"code (pass {name} in config= / --set {name}=... if that code was edited)")
        notes.append(f"{variant} file: SSA scale {_FIXED[variant]['ssa_scale']}, stem pooling "
                     f"{_FIXED[variant]['pooling_stat']} (fixed in upstream's code)")
        return ArchitectureGuess(fields, "SSA", f"a Spikformer ({variant}) file: using its SSA attention")

    return UpstreamFormat(variant, claims=claims, guess=guess, infer_from_shapes=_infer_from_shapes,
                          required=lambda fields: _REQUIRED, dead_reason=_dead_reason)


def _dead_reason(key: str, cfg: ModelConfig) -> str | None:
    if _DEAD.match(key):
        return "registered upstream but never read by its forward (Spikformer LayerNorms and pos_embed)"
    return None


SPIKFORMER = tuple(_format(variant) for variant in _SIGNATURE)
