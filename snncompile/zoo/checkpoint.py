"""Read and write model checkpoints without ever executing code from the file.

Three kinds of file load into a model of its backbone (:mod:`snncompile.nn.backbones`):

- ``snncompile``: our own format, written by :func:`save_checkpoint` — plain types and tensors only,
  with the full :class:`ModelConfig` embedded.
- ``upstream``: a file written by a backbone's upstream training script (a timm ``CheckpointSaver`` file from
  the STAtten or Spike-Driven Transformer repositories: ``arch``, ``args``, ``epoch``, ``metric``, ``optimizer``,
  ``state_dict``, ...). Which backbone wrote it, and its architecture (from ``args`` and the weight shapes), is
  :mod:`.upstream`'s business, one reader per backbone.
- ``state_dict``: a bare ``{name: tensor}`` file; the caller supplies the configuration.

Files are read with :func:`snncompile.zoo.torchfile.read_torch_file`, which never executes code
from the file.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..config import MAX_WEIGHTS, ConfigError, ModelConfig, model_config_from_dict
from ..nn.backbones import build_model
from .torchfile import CheckpointError, _short, read_torch_file
from .upstream import FORMATS, is_upstream, parse_upstream
from .upstream_format import Parsed, scalar, string_keys, strip_module_prefix

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


def save_checkpoint(path: str | Path, model: nn.Module, *, name: str | None = None,
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

    model: nn.Module  # in eval mode, on the CPU
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
    elif is_upstream(obj):
        parsed = parse_upstream(path, obj)
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if config is None:
            raise CheckpointError(
                f"{path}: a bare state_dict carries no architecture; pass config= (a ModelConfig, or a "
                "dict with at least attention, img_size, time_steps and pooling_stat; the remaining "
                "sizes are read from the weight shapes)")
        notes: list[str] = []
        state_dict = strip_module_prefix(dict(obj), notes)
        backbone = config.backbone if isinstance(config, ModelConfig) else config.get("backbone", "sdt")
        if backbone not in FORMATS:
            raise CheckpointError(f"{path}: config backbone {_short(backbone)} is not one of {', '.join(FORMATS)}")
        parsed = Parsed("state_dict", state_dict, FORMATS[backbone].infer_from_shapes(path, state_dict),
                        notes=notes)
    else:
        keys = f"keys {sorted(map(str, obj))[:12]}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a model checkpoint: expected our format, an upstream checkpoint "
                              f"(weights under state_dict or model), or a state_dict; found {keys}")
    cfg = _resolve_config(path, parsed, attention, config)
    model = _load_weights(path, cfg, parsed.state_dict, strict, parsed.notes)
    return LoadedCheckpoint(model=model, config=cfg, source=parsed.source, metrics=parsed.metrics,
                            name=parsed.name, notes=parsed.notes, path=path, extra=parsed.extra,
                            dataset=parsed.dataset, transform=parsed.transform)


def _parse_snncompile(path: Path, obj: dict) -> Parsed:
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
    config = {k: scalar(path, f"config.{k}", v) for k, v in string_keys(path, "config", obj["config"]).items()}
    return Parsed("snncompile", obj["state_dict"], config, metrics=metrics,
                   name=obj.get("name"), extra=obj.get("extra", {}), dataset=metrics.get("dataset"))


def _resolve_config(path: Path, parsed: Parsed, attention: str | None,
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
        reader = FORMATS.get(fields.get("backbone", "sdt"))
        if reader is None:
            raise CheckpointError(f"{path}: backbone {_short(fields['backbone'])} is not one of {', '.join(FORMATS)}")
        missing = [f for f in reader.required(fields) if f not in fields]
        if missing:
            raise CheckpointError(
                f"{path}: cannot tell the model's {', '.join(missing)} from the "
                f"{'checkpoint args and ' if parsed.source == 'upstream' else ''}weight shapes; pass "
                f"them in config=, e.g. config={{{', '.join(repr(m) + ': ...' for m in missing)}}}")
        for f in reader.defaulted:
            if f not in fields:
                notes.append(f"{f} not given by the file; assuming {getattr(ModelConfig(), f)}")
    try:
        return model_config_from_dict(fields, where=f"{path}: model config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def _describe(cfg: ModelConfig) -> str:
    return (f"{cfg.attention} model (dim={cfg.dim}, num_heads={cfg.num_heads}, layers={cfg.layers}, "
            f"mlp_ratio={cfg.mlp_ratio}, in_channels={cfg.in_channels}, num_classes={cfg.num_classes}, "
            f"spike_mode={cfg.spike_mode})")


def _load_weights(path: Path, cfg: ModelConfig, state_dict: dict, strict: bool,
                  notes: list[str]) -> nn.Module:
    reader = FORMATS[cfg.backbone]
    string_keys(path, "state_dict", state_dict)
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
    for key in [k for k in unexpected if reader.dead_reason(k, cfg)]:
        notes.append(f"dropped dead parameter {key} ({reader.dead_reason(key, cfg)})")
        unexpected.remove(key)
    missing = [k for k in expected if k not in state_dict]
    mismatched = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]

    problems = []
    if missing:
        problems.append("missing keys (in the model, not in the file): " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys (in the file, not in the model): " + ", ".join(unexpected))
        problems += reader.hints(unexpected)
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
