"""Checkpoints of the Spike-Driven Transformer v1 backbone, as the STAtten and Spike-Driven Transformer
repositories' timm ``train.py`` write them (``arch``, ``args``, ``epoch``, ``metric``, ``state_dict``, ...): the
architecture comes from ``args`` (an ``argparse.Namespace``) and the weight shapes (models.md §2, §9)."""
from __future__ import annotations

import re
from pathlib import Path

from ..config import MAX_SIZES, ModelConfig
from .torchfile import CheckpointError, _short
from .upstream_format import FIELD_TYPES, ArchitectureGuess, UpstreamFormat, coerce, scalar, shape

# upstream args attribute -> ModelConfig field
_ARGS_FIELDS = {
    "time_steps": "time_steps", "chunk_size": "chunk_size", "num_heads": "num_heads",
    "num_classes": "num_classes", "pooling_stat": "pooling_stat", "img_size": "img_size", "dim": "dim",
    "mlp_ratio": "mlp_ratio", "in_channels": "in_channels", "layer": "layers",
    "spike_mode": "spike_mode", "TET": "tet", "dvs_mode": "dvs_mode",
}
# Datasets for which upstream train.py switches dvs_mode on when args has no dvs_mode (models.md §2.5, §3.8).
_DVS_DATASETS_STATTEN = {"cifar10-dvs", "ncaltech101"}
_DVS_DATASETS_SDT = {"cifar10-dvs", "cifar10-dvs-tet"}
# Architecture fields that neither weight shapes nor defaults can supply.
_REQUIRED = ("attention", "img_size", "time_steps", "pooling_stat", "dim", "num_heads", "in_channels",
             "num_classes", "layers", "mlp_ratio")
# The only parametric-LIF weights of a plif model (STAtten keeps every other neuron LIF, models.md §1.5).
_PLIF_KEY = re.compile(r"(^|\.)(fc1_lif|fc2_lif|head_lif)\.w$")
# Upstream parameters that are never used in forward (models.md §9.1.8); dropped with a note when
# our model lacks them. Pattern -> (applies to attention mode, or None for all; reason).
_DEAD_PARAMETERS = (
    (re.compile(r"^patch_embed\.rpe_lif\."), None, "rpe_lif is defined but never called upstream"),
    (re.compile(r"^block\.\d+\.attn\.attn_lif\."), "SDT", "attn_lif is unused in SDT (SDSA) mode"),
)


def _claims(obj: dict, args: dict | None, state_dict: dict) -> bool:
    """Any timm checkpoint (other ``arch`` values load as this backbone, with a note)."""
    return "state_dict" in obj


def _guess(path: Path, obj: dict, args: dict | None, state_dict: dict, notes: list[str]) -> ArchitectureGuess:
    arch = obj.get("arch", (args or {}).get("model"))
    if arch is not None and arch != "sdt":
        notes.append(f"arch {_short(arch)} is not the Spike-Driven Transformer ('sdt'); loading it as one")
    fields = {"backbone": "sdt", **_infer_from_shapes(path, state_dict)}
    if args is None:
        return ArchitectureGuess(fields)
    for attr, name in _ARGS_FIELDS.items():
        if args.get(attr) is not None:
            fields[name] = coerce(scalar(path, f"args.{attr}", args[attr]), FIELD_TYPES[name])
    from_statten = "attention_mode" in args
    if from_statten:
        suggested, note = "STAtten", None
        if args["attention_mode"] != "STAtten":
            note = (f"attention_mode {_short(args['attention_mode'])} in args is ignored by upstream "
                    "STAtten train.py (it never passes it to the model); using STAtten")
    else:
        suggested = "SDT"
        note = ("args has no attention_mode: a Spike-Driven Transformer repository checkpoint; "
                "using SDT (SDSA) attention")
    if args.get("dvs_mode") is None and isinstance(args.get("dataset"), str):
        dvs_sets = _DVS_DATASETS_STATTEN if from_statten else _DVS_DATASETS_SDT
        fields["dvs_mode"] = args["dataset"] in dvs_sets
        notes.append(f"dvs_mode={fields['dvs_mode']} derived from args.dataset {args['dataset']!r}")
    return ArchitectureGuess(fields, suggested, note)


def _block_count(path: Path, state_dict: dict) -> int:
    """The number of blocks the ``block.<i>.`` keys name, refusing an index past ``MAX_SIZES['layers']``
    before anything is built."""
    largest = MAX_SIZES["layers"]
    indices = [-1]
    for key in state_dict:
        if isinstance(key, str) and (m := re.match(r"block\.(\d+)\.", key)):
            digits = m.group(1)
            if len(digits) > len(str(largest)) or int(digits) >= largest:
                raise CheckpointError(f"{path}: key {key[:80]!r} names block {digits[:20]}; a model has at "
                                      f"most {largest} blocks (layers)")
            indices.append(int(digits))
    return max(indices) + 1


def _infer_from_shapes(path: Path, state_dict: dict) -> dict:
    """ModelConfig fields implied by weight shapes (only those the weights determine)."""
    out: dict = {}
    if s := shape(state_dict, "patch_embed.proj_conv3.weight", 4):
        out["dim"] = s[0]
    if s := shape(state_dict, "patch_embed.proj_conv.weight", 4):
        out["in_channels"] = s[1]
    if s := shape(state_dict, "head.weight", 2):
        out["num_classes"] = s[0]
    if s := shape(state_dict, "block.0.attn.talking_heads.weight", 3):
        out["num_heads"] = s[0]
    if layers := _block_count(path, state_dict):
        out["layers"] = layers
    s = shape(state_dict, "block.0.mlp.fc1_conv.weight", 4)
    if s and out.get("dim") and s[0] % out["dim"] == 0:
        out["mlp_ratio"] = s[0] // out["dim"]
    plif = any(isinstance(k, str) and _PLIF_KEY.search(k) for k in state_dict)
    out["spike_mode"] = "plif" if plif else "lif"
    return out


def _required(fields: dict) -> tuple[str, ...]:
    return _REQUIRED + (("chunk_size",) if fields.get("attention") == "STAtten" else ())


def _dead_reason(key: str, cfg: ModelConfig) -> str | None:
    for pattern, mode, reason in _DEAD_PARAMETERS:
        if pattern.match(key) and mode in (None, cfg.attention):
            return reason
    return None


def _hints(unexpected: list[str]) -> list[str]:
    sdt_plif = [k for k in unexpected if k.endswith("_lif.w") and not _PLIF_KEY.search(k)]
    if not sdt_plif:
        return []
    return ["hint: parametric-LIF weights outside the MLP and head "
            f"({', '.join(sdt_plif[:3])}, ...) come from the Spike-Driven Transformer "
            "repository's plif mode, where every neuron is parametric; load the file with "
            "attention='SDT' (--attention SDT)"]


SDT = UpstreamFormat("sdt", claims=_claims, guess=_guess, infer_from_shapes=_infer_from_shapes,
                     required=_required, defaulted=("dvs_mode", "tet"), dead_reason=_dead_reason, hints=_hints)
