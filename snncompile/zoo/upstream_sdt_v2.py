"""Checkpoints of the Spike-Driven Transformer V2 (Meta-SpikeFormer), as its ``main_finetune.py`` writes them
(``util/misc.py::save_model``, MAE/DeiT style: ``model, optimizer, epoch, scaler, args``).

``args.model`` names the factory (``metaspikformer_8_384`` ...: the stage widths, 8 heads, 1000 classes, all
hard-coded), ``args.time_steps`` is T (the model's ``T`` attribute is not in the state_dict; upstream's default
is 1), ``args.input_size`` the image side and ``args.kd`` adds ``head_kd`` (the eval output is the mean of both
heads). The widths, depth, classes and the kd head are read from the weight shapes; ``num_heads`` is never in the
file: every upstream factory uses 8, assumed with a note for a factory name that is not upstream's.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..config import MAX_SIZES
from .torchfile import CheckpointError, _short
from .upstream_format import FIELD_TYPES, ArchitectureGuess, UpstreamFormat, coerce, scalar, shape

FACTORY_DIMS = {"metaspikformer_8_384": 384, "metaspikformer_8_512": 512, "metaspikformer_8_768": 768}
FACTORY_HEADS = 8
# upstream args attribute -> ModelConfig field
_ARGS_FIELDS = {"time_steps": "time_steps", "input_size": "img_size"}
_REQUIRED = ("img_size", "time_steps", "dim", "num_heads", "in_channels", "num_classes", "layers", "mlp_ratio")
_STAGE_KEY = re.compile(r"block([34])\.(\d+)\.")
_V2_KEY = "ConvBlock1_1.0.Conv.pwconv1.weight"


def _claims(obj: dict, args: dict | None, state_dict: dict) -> bool:
    """A file whose ``args.model`` is a ``metaspikformer_*`` factory, or without a factory name whose weights have
    V2's SepConv (SDT-V3, which shares the stem's keys, names its pointwise convolutions ``pwconv1.0``)."""
    factory = (args or {}).get("model")
    if isinstance(factory, str):
        return factory.startswith("metaspikformer")
    return _V2_KEY in state_dict


def _guess(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
    fields = {"backbone": "sdt-v2", **_infer_from_shapes(path, state_dict)}
    args = args or {}
    for attr, name in _ARGS_FIELDS.items():
        if args.get(attr) is not None:
            fields[name] = coerce(scalar(path, f"args.{attr}", args[attr]), FIELD_TYPES[name])
    factory = args.get("model")
    if isinstance(factory, str):
        if factory in FACTORY_DIMS and fields.get("dim") not in (None, FACTORY_DIMS[factory]):
            notes.append(f"args.model {factory!r} has dim {FACTORY_DIMS[factory]}, the weights have dim "
                         f"{fields['dim']}; using the weights'")
        fields["num_heads"] = FACTORY_HEADS
        if factory not in FACTORY_DIMS:
            notes.append(f"args.model {_short(factory)} is not an upstream factory; assuming its {FACTORY_HEADS} "
                         "heads (every upstream factory's; set num_heads otherwise)")
    if "time_steps" not in args:
        notes.append("args has no time_steps; upstream's default is 1")
        fields["time_steps"] = 1
    kd = scalar(path, "args.kd", args.get("kd"))
    if kd is not None and bool(kd) != fields["kd_head"]:
        notes.append(f"args.kd is {kd!r} but the weights {'have' if fields['kd_head'] else 'lack'} head_kd; "
                     "following the weights")
    return ArchitectureGuess(fields)


def _stage_depths(path: Path, state_dict: dict) -> tuple[int, int]:
    """Blocks of stage 3 and 4 named by ``block3.<i>.`` / ``block4.<i>.`` keys, refusing an index past
    ``MAX_SIZES['layers']`` before anything is built."""
    largest = MAX_SIZES["layers"]
    depth = {"3": 0, "4": 0}
    for key in state_dict:
        if isinstance(key, str) and (m := _STAGE_KEY.match(key)):
            digits = m.group(2)
            if len(digits) > len(str(largest)) or int(digits) >= largest:
                raise CheckpointError(f"{path}: key {key[:80]!r} names block {digits[:20]}; a model has at most "
                                      f"{largest} blocks (layers)")
            depth[m.group(1)] = max(depth[m.group(1)], int(digits) + 1)
    return depth["3"], depth["4"]


def _infer_from_shapes(path: Path, state_dict: dict) -> dict:
    """ModelConfig fields implied by the weight shapes (dim is stage 3's width, upstream ``embed_dim[2]``), and the
    backbone's only attention (SSA's ``Q (K^T V) * 0.125``)."""
    out: dict = {"attention": "SSA", "kd_head": "head_kd.weight" in state_dict}
    if s := shape(state_dict, "downsample3.encode_conv.weight", 4):
        out["dim"] = s[0]
    if s := shape(state_dict, "downsample1_1.encode_conv.weight", 4):
        out["in_channels"] = s[1]
    if s := shape(state_dict, "head.weight", 2):
        out["num_classes"] = s[0]
    stage3, stage4 = _stage_depths(path, state_dict)
    if stage4:
        if stage4 != 2:
            raise CheckpointError(f"{path}: the weights have {stage4} stage-4 blocks (block4.*); upstream's "
                                  "Meta-SpikeFormer has 2")
        out["layers"] = stage3 + stage4
    s = shape(state_dict, "block4.0.mlp.fc1_conv.weight", 3)
    if s and (width := shape(state_dict, "block4.0.mlp.fc2_conv.weight", 3)) and s[0] % width[0] == 0:
        out["mlp_ratio"] = s[0] // width[0]
    return out


def _required(fields: dict) -> tuple[str, ...]:
    return _REQUIRED


SDT_V2 = UpstreamFormat("sdt-v2", claims=_claims, guess=_guess, infer_from_shapes=_infer_from_shapes,
                        required=_required)
