"""Read and write model checkpoints without ever executing code from the file.

Three kinds of file load into a :class:`~snncompile.nn.sdt.SpikeDrivenTransformer`:

- ``snncompile``: our own format, written by :func:`save_checkpoint` — plain types and tensors only,
  with the full :class:`ModelConfig` embedded.
- ``upstream``: a timm ``CheckpointSaver`` file from the STAtten or Spike-Driven Transformer
  repositories (``arch``, ``args``, ``epoch``, ``metric``, ``optimizer``, ``state_dict``, ...). The
  architecture is read from ``args`` (an ``argparse.Namespace``) and the weight shapes.
- ``state_dict``: a bare ``{name: tensor}`` file; the caller supplies the configuration.

Files are read with :func:`snncompile.zoo.torchfile.read_torch_file`, which never executes code
from the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..config import MAX_SIZES, MAX_WEIGHTS, ConfigError, ModelConfig, is_int, model_config_from_dict
from ..nn.sdt import SpikeDrivenTransformer, build_model
from .torchfile import CheckpointError, _short, read_torch_file

FORMAT = "snncompile-checkpoint"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------

def _plain(value: Any, where: str) -> Any:
    """Return ``value`` with numbers made builtin; TypeError for anything the reader would refuse."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: keys must be strings, got {bad[0]!r}")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: {type(value).__name__} is not a plain type (str, number, bool, None, "
                    "tensor, list, tuple, dict)")


def save_checkpoint(path: str | Path, model: SpikeDrivenTransformer, *, name: str | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (weights + full config) in the ``snncompile`` format and return the path.

    Only plain types and tensors are stored, so :func:`load_checkpoint` reads the file back without
    allowing any class; no optimizer state is kept. The file is written next to ``path`` and renamed
    into place, so an interrupted save never leaves a truncated checkpoint.
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"save_checkpoint needs a model with a ModelConfig .cfg, got {type(model).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "config": dataclasses.asdict(cfg),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "extra": _plain(dict(extra or {}), "extra"),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------
# Loading into a model
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint loaded into a model, with where its configuration came from."""

    model: SpikeDrivenTransformer  # in eval mode, on the CPU
    config: ModelConfig
    source: Literal["snncompile", "upstream", "state_dict"]
    metrics: dict
    name: str | None
    notes: list[str]               # human-readable remarks on inferences, overrides, dropped keys
    path: Path
    extra: dict = field(default_factory=dict)  # save_checkpoint(extra=...) of our format
    dataset: str | None = None     # DataConfig.dataset the file was trained on, when it says so
    #: the evaluation transform settings its upstream ``args`` set (``crop_pct``, ``interpolation``, ``mean``,
    #: ``std``, ``img_size``), for image-folder data (``snncompile.data.imagefolder.EvalTransform.from_args``)
    transform: dict = field(default_factory=dict)


# upstream args attribute -> ModelConfig field
_ARGS_FIELDS = {
    "time_steps": "time_steps", "chunk_size": "chunk_size", "num_heads": "num_heads",
    "num_classes": "num_classes", "pooling_stat": "pooling_stat", "img_size": "img_size", "dim": "dim",
    "mlp_ratio": "mlp_ratio", "in_channels": "in_channels", "layer": "layers",
    "spike_mode": "spike_mode", "TET": "tet", "dvs_mode": "dvs_mode",
}
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(ModelConfig)}  # "int", "bool", ...
# Datasets for which upstream train.py switches dvs_mode on when args has no dvs_mode (models.md §2.5, §3.8).
_DVS_DATASETS_STATTEN = {"cifar10-dvs", "ncaltech101"}
_DVS_DATASETS_SDT = {"cifar10-dvs", "cifar10-dvs-tet"}
# upstream --dataset values -> DataConfig.dataset
_UPSTREAM_DATASETS = {"torch/cifar10": "cifar10", "cifar10": "cifar10", "cifar10-dvs": "cifar10-dvs",
                      "cifar10-dvs-tet": "cifar10-dvs", "ncaltech101": "ncaltech101",
                      "torch/imagenet": "imagenet", "imagenet": "imagenet"}
# Architecture fields that neither weight shapes nor defaults can supply.
_REQUIRED = ("attention", "img_size", "time_steps", "pooling_stat", "dim", "num_heads", "in_channels",
             "num_classes", "layers", "mlp_ratio")
# Fields whose ModelConfig default (False) matches upstream's default; used with a note when unknown.
_DEFAULTED = ("dvs_mode", "tet")

# The only parametric-LIF weights of a plif model (STAtten keeps every other neuron LIF, models.md §1.5).
_PLIF_KEY = re.compile(r"(^|\.)(fc1_lif|fc2_lif|head_lif)\.w$")
# Upstream parameters that are never used in forward (models.md §9.1.8); dropped with a note when
# our model lacks them. Pattern -> (applies to attention mode, or None for all; reason).
_DEAD_PARAMETERS = (
    (re.compile(r"^patch_embed\.rpe_lif\."), None, "rpe_lif is defined but never called upstream"),
    (re.compile(r"^block\.\d+\.attn\.attn_lif\."), "SDT", "attn_lif is unused in SDT (SDSA) mode"),
)


@dataclass
class _Parsed:
    """What a file contributes before the model is built."""

    source: Literal["snncompile", "upstream", "state_dict"]
    state_dict: dict
    fields: dict            # ModelConfig fields known from the file (embedded config, args, shapes)
    suggested_attention: str | None = None
    attention_note: str | None = None  # why the file suggests that mode; kept unless overridden
    metrics: dict = field(default_factory=dict)
    name: str | None = None
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dataset: str | None = None
    transform: dict = field(default_factory=dict)


def load_checkpoint(path: str | Path, *, attention: str | None = None,
                    config: ModelConfig | dict | None = None, strict: bool = True) -> LoadedCheckpoint:
    """Load any supported checkpoint into a fresh model in eval mode.

    ``attention`` overrides the attention mode; ``config`` is either a complete :class:`ModelConfig`
    (used as is, apart from ``attention``) or a dict of field overrides that win over what the file
    says. With ``strict`` every missing, unexpected or mis-shaped key is an error (all listed in one
    :class:`CheckpointError`); with ``strict=False`` matching weights load and the rest is recorded
    in ``notes``. The architecture is checked against ``config.MAX_SIZES`` and its weights are counted
    (at most ``config.MAX_WEIGHTS``) before the model is built (README, "Resource limits").
    """
    path = Path(path)
    if config is not None and not isinstance(config, (ModelConfig, dict)):
        raise TypeError(f"config must be a ModelConfig or a dict of overrides, got {type(config).__name__}")
    if isinstance(config, dict) and attention is not None and config.get("attention", attention) != attention:
        raise ValueError(f"attention={attention!r} contradicts config['attention']={config['attention']!r}")
    obj = read_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        parsed = _parse_snncompile(path, obj)
    elif isinstance(obj, dict) and "state_dict" in obj:
        parsed = _parse_upstream(path, obj)
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if config is None:
            raise CheckpointError(
                f"{path}: a bare state_dict carries no architecture; pass config= (a ModelConfig, or a "
                "dict with at least attention, img_size, time_steps and pooling_stat; the remaining "
                "sizes are read from the weight shapes)")
        notes: list[str] = []
        state_dict = _strip_module_prefix(dict(obj), notes)
        parsed = _Parsed("state_dict", state_dict, _infer_from_shapes(path, state_dict), notes=notes)
    else:
        keys = f"keys {sorted(map(str, obj))[:12]}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a model checkpoint: expected our format, a timm checkpoint "
                              f"with a state_dict, or a state_dict; found {keys}")
    cfg = _resolve_config(path, parsed, attention, config)
    model = _load_weights(path, cfg, parsed.state_dict, strict, parsed.notes)
    return LoadedCheckpoint(model=model, config=cfg, source=parsed.source, metrics=parsed.metrics,
                            name=parsed.name, notes=parsed.notes, path=path, extra=parsed.extra,
                            dataset=parsed.dataset, transform=parsed.transform)


def _parse_snncompile(path: Path, obj: dict) -> _Parsed:
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: {FORMAT} format_version {_short(version)} is not supported "
                              f"(this snncompile reads version {FORMAT_VERSION})")
    problems = [f"{key} is missing" for key in ("config", "state_dict") if key not in obj]
    problems += [f"{key} must be a dict" for key in ("config", "state_dict", "metrics", "extra")
                 if not isinstance(obj.get(key, {}), dict)]
    if not isinstance(obj.get("name"), (str, type(None))):
        problems.append("name must be a string or None")
    if problems:
        raise CheckpointError(f"{path}: malformed {FORMAT}: " + "; ".join(problems))
    metrics = obj.get("metrics", {})
    config = {k: _scalar(path, f"config.{k}", v) for k, v in _string_keys(path, "config", obj["config"]).items()}
    return _Parsed("snncompile", obj["state_dict"], config, metrics=metrics,
                   name=obj.get("name"), extra=obj.get("extra", {}), dataset=metrics.get("dataset"))


TRANSFORM_ARGS = ("img_size", "crop_pct", "interpolation", "mean", "std")  # timm train.py's evaluation transform


def _parse_upstream(path: Path, obj: dict) -> _Parsed:
    notes: list[str] = []
    state_dict = obj["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a dict")
    state_dict = _strip_module_prefix(dict(state_dict), notes)
    if "state_dict_ema" in obj:
        notes.append("file also holds state_dict_ema (EMA weights); loaded state_dict")
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    elif args is not None and not isinstance(args, dict):
        raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, not an argparse.Namespace")
    arch = obj.get("arch", (args or {}).get("model"))
    if arch is not None and arch != "sdt":
        notes.append(f"arch {_short(arch)} is not the Spike-Driven Transformer ('sdt'); loading it as one")

    fields = _infer_from_shapes(path, state_dict)
    suggested = note = None
    if args is not None:
        for attr, name in _ARGS_FIELDS.items():
            if args.get(attr) is not None:
                fields[name] = _coerce(_scalar(path, f"args.{attr}", args[attr]), _FIELD_TYPES[name])
        from_statten = "attention_mode" in args
        if from_statten:
            suggested = "STAtten"
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
    upstream_dataset = (args or {}).get("dataset")
    dataset = _UPSTREAM_DATASETS.get(upstream_dataset) if isinstance(upstream_dataset, str) else None
    metrics: dict = {}
    if is_int(obj.get("epoch")):
        metrics["epoch"] = obj["epoch"]
    if isinstance(obj.get("metric"), numbers.Real) and not isinstance(obj["metric"], bool):
        metrics["metric"] = float(obj["metric"])
        if args is not None and isinstance(args.get("eval_metric"), str):
            metrics["eval_metric"] = args["eval_metric"]
    transform = {k: _transform_value(path, k, (args or {})[k]) for k in TRANSFORM_ARGS
                 if (args or {}).get(k) not in (None, "")}
    return _Parsed("upstream", state_dict, fields, suggested_attention=suggested, attention_note=note,
                   metrics=metrics, notes=notes, dataset=dataset, transform=transform)


def _string_keys(path: Path, where: str, values: dict) -> dict:
    """``values`` when every key is a printable string (keys are quoted in messages, one line each)."""
    odd = [k for k in values if not (isinstance(k, str) and k.isprintable())]
    if odd:
        raise CheckpointError(f"{path}: {where} keys must be printable strings, got {_short(odd[0])}")
    return values


def _transform_value(path: Path, key: str, value: Any) -> Any:
    """An evaluation-transform setting of ``args``: a scalar, or (``mean``, ``std``, ``img_size``) a short
    sequence of numbers; anything else is one error naming the field."""
    if isinstance(value, (list, tuple)) and len(value) <= 4 and all(isinstance(v, numbers.Number) for v in value):
        return value
    return _scalar(path, f"args.{key}", value)


def _scalar(path: Path, where: str, value: Any) -> Any:
    """``value`` when it is what a configuration field holds (a number, string, bool or None); else one error
    naming the field (a tensor or container would print over many lines in the field's check)."""
    if not isinstance(value, (str, numbers.Number, np.bool_, type(None))):
        raise CheckpointError(f"{path}: {where} is a {type(value).__name__} ({_short(value)}), not a number or "
                              "string")
    return value


def _coerce(value: Any, kind: str) -> Any:
    """Make argparse/numpy values match ModelConfig field types where that loses nothing."""
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind == "bool" and isinstance(value, np.bool_):
        return bool(value)
    return value


def _strip_module_prefix(state_dict: dict, notes: list[str]) -> dict:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds, if every key has it."""
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        notes.append("stripped the 'module.' prefix ((Distributed)DataParallel) from every key")
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _shape(state_dict: dict, key: str, ndim: int) -> tuple[int, ...] | None:
    t = state_dict.get(key)
    return tuple(t.shape) if isinstance(t, torch.Tensor) and t.dim() == ndim else None


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
    if s := _shape(state_dict, "patch_embed.proj_conv3.weight", 4):
        out["dim"] = s[0]
    if s := _shape(state_dict, "patch_embed.proj_conv.weight", 4):
        out["in_channels"] = s[1]
    if s := _shape(state_dict, "head.weight", 2):
        out["num_classes"] = s[0]
    if s := _shape(state_dict, "block.0.attn.talking_heads.weight", 3):
        out["num_heads"] = s[0]
    if layers := _block_count(path, state_dict):
        out["layers"] = layers
    s = _shape(state_dict, "block.0.mlp.fc1_conv.weight", 4)
    if s and out.get("dim") and s[0] % out["dim"] == 0:
        out["mlp_ratio"] = s[0] // out["dim"]
    plif = any(isinstance(k, str) and _PLIF_KEY.search(k) for k in state_dict)
    out["spike_mode"] = "plif" if plif else "lif"
    return out


def _resolve_config(path: Path, parsed: _Parsed, attention: str | None,
                    config: ModelConfig | dict | None) -> ModelConfig:
    notes = parsed.notes
    if isinstance(config, ModelConfig):
        if attention is not None and attention != config.attention:
            notes.append(f"attention {attention!r} set by the caller over config.attention {config.attention!r}")
            config = dataclasses.replace(config, attention=attention)
        notes.append("architecture taken from the config= argument, not from the file")
        bad = config.problems()
        if bad:
            raise CheckpointError(f"{path}: config= is invalid: " + "; ".join(bad))
        return config

    fields = dict(parsed.fields)
    overrides = dict(config or {})
    if attention is not None:
        overrides["attention"] = attention
    if "attention" not in fields and parsed.suggested_attention is not None:
        fields["attention"] = parsed.suggested_attention
        if parsed.attention_note and "attention" not in overrides:
            notes.append(parsed.attention_note)
    notes += [f"{k}={v!r} set by the caller (the file says {fields[k]!r})"
              for k, v in overrides.items() if k in fields and fields[k] != v]
    fields.update(overrides)

    if parsed.source != "snncompile":
        required = _REQUIRED + (("chunk_size",) if fields.get("attention") == "STAtten" else ())
        missing = [f for f in required if f not in fields]
        if missing:
            raise CheckpointError(
                f"{path}: cannot tell the model's {', '.join(missing)} from the "
                f"{'checkpoint args and ' if parsed.source == 'upstream' else ''}weight shapes; pass "
                f"them in config=, e.g. config={{{', '.join(repr(m) + ': ...' for m in missing)}}}")
        for f in _DEFAULTED:
            if f not in fields:
                notes.append(f"{f} not given by the file; assuming {getattr(ModelConfig(), f)}")
    try:
        return model_config_from_dict(fields, where=f"{path}: model config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def _dead_reason(key: str, cfg: ModelConfig) -> str | None:
    for pattern, mode, reason in _DEAD_PARAMETERS:
        if pattern.match(key) and mode in (None, cfg.attention):
            return reason
    return None


def _describe(cfg: ModelConfig) -> str:
    return (f"{cfg.attention} model (dim={cfg.dim}, num_heads={cfg.num_heads}, layers={cfg.layers}, "
            f"mlp_ratio={cfg.mlp_ratio}, in_channels={cfg.in_channels}, num_classes={cfg.num_classes}, "
            f"spike_mode={cfg.spike_mode})")


def _load_weights(path: Path, cfg: ModelConfig, state_dict: dict, strict: bool,
                  notes: list[str]) -> SpikeDrivenTransformer:
    _string_keys(path, "state_dict", state_dict)
    not_tensors = [str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {', '.join(not_tensors)}")
    with torch.device("meta"):  # shapes only: nothing is allocated until the weights are known to fit
        expected = build_model(cfg).state_dict()
    weights = sum(t.numel() for t in expected.values())
    if weights > MAX_WEIGHTS:
        raise CheckpointError(f"{path}: the {_describe(cfg)} has {weights} weights, more than the limit of "
                              f"{MAX_WEIGHTS}")
    unexpected = [k for k in state_dict if k not in expected]
    for key in [k for k in unexpected if _dead_reason(k, cfg)]:
        notes.append(f"dropped dead parameter {key} ({_dead_reason(key, cfg)})")
        unexpected.remove(key)
    missing = [k for k in expected if k not in state_dict]
    mismatched = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]

    problems = []
    if missing:
        problems.append("missing keys (in the model, not in the file): " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys (in the file, not in the model): " + ", ".join(unexpected))
        sdt_plif = [k for k in unexpected if k.endswith("_lif.w") and not _PLIF_KEY.search(k)]
        if sdt_plif:
            problems.append("hint: parametric-LIF weights outside the MLP and head "
                            f"({', '.join(sdt_plif[:3])}, ...) come from the Spike-Driven Transformer "
                            "repository's plif mode, where every neuron is parametric; load the file with "
                            "attention='SDT' (--attention SDT)")
    problems += [f"shape mismatch for {k}: model expects {tuple(expected[k].shape)}, file has "
                 f"{tuple(state_dict[k].shape)}" for k in mismatched]
    if problems and strict:
        raise CheckpointError(f"{path}: the weights do not fit the {_describe(cfg)}:\n  - "
                              + "\n  - ".join(problems))
    notes += [f"not loaded (strict=False): {p}" for p in problems]
    model = build_model(cfg)
    model.load_state_dict({k: state_dict[k] for k in expected if k in state_dict and k not in mismatched},
                          strict=False)
    return model.eval()
