"""Checkpoints of Spike-Driven Transformer V3 (E-SpikeFormer) ``Model_Base``, as its ``main_finetune.py`` writes
them (MAE/DeiT ``save_model``: ``model``, ``optimizer``, ``epoch``, ``scaler``, ``args``).

Only ``args.model`` names the factory (widths, depths, 8 heads and 1000 classes are hard-coded there); the stage
widths and block counts are read from the weight shapes, the image size from ``args.input_size``. ``num_heads``
is in no file (the factories' 8 is assumed, with a note); ``args.time_steps`` is never read by the model (it has
no time axis), so ``time_steps`` is 1 (backbone_checkpoints.md, "Checkpoint formats found upstream").
"""
from __future__ import annotations

import re
from pathlib import Path

from ..config import MAX_SIZES
from .torchfile import CheckpointError, _short
from .upstream_format import ArchitectureGuess, UpstreamFormat, coerce, scalar, shape

FACTORY_PREFIX = "Efficient_Spiking_Transformer_"
# Factories of Model_Base/models.py and their sizes (the README's 5.1M/10M/19M are _s/_m/_l).
FACTORIES = {"Efficient_Spiking_Transformer_l": "64,128,256,360", "Efficient_Spiking_Transformer_m": "48,96,192,240",
             "Efficient_Spiking_Transformer_s": "32,64,128,192", "Efficient_Spiking_Transformer_t": "24,48,96,128"}
_LAYOUT_KEYS = ("downsample1_1.encode_conv.weight", "ConvBlock1_1.0.Conv.pwconv1.0.weight")
_STAGE_CONVS = ("downsample1_2", "downsample2", "downsample3", "downsample4")  # their outputs: the four widths


def _claims(obj: dict, args: dict | None, state_dict: dict) -> bool:
    """An MAE-style dict whose ``args.model`` is a Model_Base factory, or whose weights have its key layout."""
    model = (args or {}).get("model")
    named = isinstance(model, str) and model.startswith(FACTORY_PREFIX)
    return "model" in obj and (named or all(k in state_dict for k in _LAYOUT_KEYS))


def _guess(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
    fields = {"backbone": "sdt-v3", **_infer_from_shapes(path, state_dict)}
    factory = (args or {}).get("model")
    if isinstance(factory, str) and factory not in FACTORIES:
        notes.append(f"args.model {_short(factory)} is not one of upstream's factories ({', '.join(FACTORIES)}); "
                     "its sizes are read from the weight shapes")
    if args is not None and args.get("input_size") is not None:
        fields["img_size"] = coerce(scalar(path, "args.input_size", args["input_size"]), "int")
    if args is not None and args.get("time_steps") not in (None, 1):
        notes.append(f"args.time_steps={_short(args['time_steps'])} is ignored: upstream's model never reads it "
                     "(no time axis)")
    return ArchitectureGuess(fields)


def _block_count(path: Path, state_dict: dict, stage: str) -> int:
    """The blocks ``<stage>.<i>.`` keys name, refusing an index past ``MAX_SIZES['layers']`` before building."""
    indices = [-1]
    for key in state_dict:
        if isinstance(key, str) and (m := re.match(rf"{stage}\.(\d+)\.", key)):
            if len(m.group(1)) > 3 or int(m.group(1)) >= MAX_SIZES["layers"]:
                raise CheckpointError(f"{path}: key {key[:80]!r} names block {m.group(1)[:20]} of {stage}; a stage "
                                      f"has at most {MAX_SIZES['layers']} blocks")
            indices.append(int(m.group(1)))
    return max(indices) + 1


def _infer_from_shapes(path: Path, state_dict: dict) -> dict:
    """ModelConfig fields the weight shapes determine: stage widths and depths, input channels, classes, MLP ratio."""
    out: dict = {"backbone": "sdt-v3", "time_steps": 1}  # no time axis, whatever args.time_steps says
    widths = [shape(state_dict, f"{name}.encode_conv.weight", 4) for name in _STAGE_CONVS]
    if all(widths):
        out["stage_dims"] = ",".join(str(s[0]) for s in widths)
    if s := shape(state_dict, "downsample1_1.encode_conv.weight", 4):
        out["in_channels"] = s[1]
    if s := shape(state_dict, "head.weight", 2):
        out["num_classes"] = s[0]
    hidden = shape(state_dict, "ConvBlock1_1.0.conv1.weight", 4)
    if hidden and hidden[1] and hidden[0] % hidden[1] == 0:
        out["mlp_ratio"] = hidden[0] // hidden[1]
    out["stage_layers"] = f"{_block_count(path, state_dict, 'block3')},{_block_count(path, state_dict, 'block4')}"
    return out


def _required(fields: dict) -> tuple[str, ...]:
    return "img_size", "stage_dims", "in_channels", "num_classes", "mlp_ratio"


SDT_V3 = UpstreamFormat("sdt-v3", claims=_claims, guess=_guess, infer_from_shapes=_infer_from_shapes,
                        required=_required, defaulted=("num_heads",))
