"""Checkpoints of QKFormer (``zhouchenlin2096/QKFormer``), recognised by their key layout (``stage1.0.tssa.*``):

- ``cifar10/train.py`` (timm ``CheckpointSaver``: ``arch = args.model = 'vitsnn'``, weights under ``state_dict``):
  args ``dim``, ``layer`` (upstream depths), ``time_step``, ``mlp_ratio``, ``num_classes``, ``img_size``; the model
  ignores ``args.num_heads`` and always has 8 heads.
- ``imagenet/train.py`` (MAE-style ``util/misc.py::save_model``: weights under ``model``): ``args.model`` names the
  factory (``QKFormer_10_384`` / ``_512`` / ``_768``: widths, heads and depths are hard-coded there),
  ``args.time_step`` is T, ``args.input_size`` the image side. The ImageNet layout has ``patch_embed1.proj2_conv``.

What neither args nor weight shapes tell (the heads of an edited factory, T of a file without args) is a config field
the caller passes (``config={'num_heads': ...}``).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..config import MAX_SIZES
from .torchfile import CheckpointError, _short
from .upstream_format import FIELD_TYPES, ArchitectureGuess, UpstreamFormat, coerce, scalar, shape

_TOKEN_QK_KEY = "stage1.0.tssa.q_conv.weight"
_IMAGENET_KEY = "patch_embed1.proj2_conv.weight"
# imagenet/qkformer.py's factories: name -> (embed_dims, num_heads, depths)
_IMAGENET_FACTORIES = {"QKFormer_10_384": (384, 6, 10), "QKFormer_10_512": (512, 8, 10),
                       "QKFormer_10_768": (768, 12, 10)}
_CIFAR10_HEADS = 8  # cifar10/model.py overwrites num_heads with [8, 8, 8]
_REQUIRED = ("img_size", "time_steps", "dim", "num_heads", "in_channels", "num_classes", "layers", "mlp_ratio")
# field, the weight that tells it, its dimensions, the axis to read
_SHAPE_FIELDS = (("dim", "patch_embed3.proj4_conv.weight", 4, 0),
                 ("in_channels", "patch_embed1.proj_conv.weight", 4, 1), ("num_classes", "head.weight", 2, 0))
_STAGE_BLOCK = re.compile(r"stage([123])\.(\d+)\.")


def _is_qkformer(state_dict: dict, imagenet: bool) -> bool:
    return _TOKEN_QK_KEY in state_dict and (_IMAGENET_KEY in state_dict) == imagenet


def _args_fields(path: Path, args: dict | None, names: dict[str, str]) -> dict:
    return {field: coerce(scalar(path, f"args.{attr}", args[attr]), FIELD_TYPES[field])
            for attr, field in names.items() if (args or {}).get(attr) is not None}


def _guess_cifar10(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
    arch = obj.get("arch", (args or {}).get("model"))
    if arch is not None and arch != "vitsnn":
        notes.append(f"arch {_short(arch)} is not QKFormer cifar10's 'vitsnn'; the key layout is QKFormer's")
    fields = {"backbone": "qkformer-cifar10", **_infer_from_shapes(path, state_dict)}
    fields.update(_args_fields(path, args, {"dim": "dim", "layer": "layers", "time_step": "time_steps",
                                            "mlp_ratio": "mlp_ratio", "num_classes": "num_classes",
                                            "img_size": "img_size"}))
    fields["num_heads"] = _CIFAR10_HEADS
    if (args or {}).get("num_heads") not in (None, _CIFAR10_HEADS):
        notes.append(f"args.num_heads {_short(args['num_heads'])} is ignored by upstream cifar10/model.py, which "
                     f"always builds {_CIFAR10_HEADS} heads; using {_CIFAR10_HEADS}")
    return ArchitectureGuess(fields)


def _guess_imagenet(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
    fields = {"backbone": "qkformer-imagenet", **_infer_from_shapes(path, state_dict)}
    fields.update(_args_fields(path, args, {"time_step": "time_steps", "input_size": "img_size"}))
    factory = (args or {}).get("model")
    if factory in _IMAGENET_FACTORIES:
        dim, heads, depths = _IMAGENET_FACTORIES[factory]
        fields["num_heads"] = heads
        for name, value in (("dim", dim), ("layers", depths)):
            if fields.get(name, value) != value:
                raise CheckpointError(f"{path}: args.model {factory!r} builds {name}={value}, the weights have "
                                      f"{name}={fields[name]}")
    elif factory is not None:
        notes.append(f"args.model {_short(factory)} is not one of upstream's factories "
                     f"({', '.join(_IMAGENET_FACTORIES)}): its heads are not known from the file")
    return ArchitectureGuess(fields)


def _stage_blocks(path: Path, state_dict: dict) -> int:
    """Blocks of all three stages named by the keys, refusing an index past ``MAX_SIZES['layers']`` before
    anything is built."""
    largest = MAX_SIZES["layers"]
    blocks: set[tuple[str, int]] = set()
    for key in state_dict:
        if isinstance(key, str) and (m := _STAGE_BLOCK.match(key)):
            stage, digits = m.groups()
            if len(digits) > len(str(largest)) or int(digits) >= largest:
                raise CheckpointError(f"{path}: key {key[:80]!r} names block {digits[:20]} of stage {stage}; a "
                                      f"model has at most {largest} blocks (layers)")
            blocks.add((stage, int(digits)))
    return len(blocks)


def _infer_from_shapes(path: Path, state_dict: dict) -> dict:
    """ModelConfig fields the weights determine: widths, input channels, classes, blocks, MLP ratio."""
    out: dict = {}
    for field, key, ndim, axis in _SHAPE_FIELDS:
        if s := shape(state_dict, key, ndim):
            out[field] = s[axis]
    if layers := _stage_blocks(path, state_dict):
        out["layers"] = layers
    hidden = next((s for name in ("mlp1", "fc1") if (s := shape(state_dict, f"stage1.0.mlp.{name}_conv.weight", 4))),
                  None)
    if hidden and hidden[1] and hidden[0] % hidden[1] == 0:
        out["mlp_ratio"] = hidden[0] // hidden[1]
    return out


def _required(fields: dict) -> tuple[str, ...]:
    return _REQUIRED


QKFORMER_CIFAR10 = UpstreamFormat(
    "qkformer-cifar10", claims=lambda obj, args, state_dict: _is_qkformer(state_dict, imagenet=False),
    guess=_guess_cifar10, infer_from_shapes=_infer_from_shapes, required=_required)
QKFORMER_IMAGENET = UpstreamFormat(
    "qkformer-imagenet", claims=lambda obj, args, state_dict: _is_qkformer(state_dict, imagenet=True),
    guess=_guess_imagenet, infer_from_shapes=_infer_from_shapes, required=_required)
