"""What every upstream checkpoint reader shares: the parsed file, one backbone's reading rules, and the checks on
the values a file gives (each error names the file and the field)."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..config import ModelConfig
from .torchfile import CheckpointError, _short

FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(ModelConfig)}  # "int", "bool", ...


@dataclass
class Parsed:
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


@dataclass(frozen=True)
class ArchitectureGuess:
    """What a backbone's reader takes from a file's ``args`` and weights."""

    fields: dict                       # ModelConfig fields (``backbone`` included)
    suggested_attention: str | None = None
    attention_note: str | None = None


def _nothing_dead(key: str, cfg: ModelConfig) -> str | None:
    return None


def _no_hints(unexpected: list[str]) -> list[str]:
    return []


@dataclass(frozen=True)
class UpstreamFormat:
    """How one backbone's upstream training scripts write checkpoints, and how to read them.

    ``claims(obj, args, state_dict)`` says whether a file is this backbone's (the readers are asked in order,
    the Spike-Driven Transformer v1 last: it takes any other timm checkpoint, with a note);
    ``guess(path, obj, args, state_dict, notes)`` gives the architecture; ``infer_from_shapes(path, state_dict)``
    the fields the weights alone determine (also for a bare state_dict); ``required(fields)`` the fields that must
    be known before the model is built; ``defaulted`` those whose config default is upstream's (assumed with a
    note); ``dead_reason(key, cfg)`` why an upstream parameter the model lacks is dropped (None: it is an error);
    ``hints(unexpected_keys)`` advice for weights that do not fit.
    """

    backbone: str
    claims: Callable[[dict, dict | None, dict], bool]
    guess: Callable[[Path, dict, dict | None, dict, list[str]], ArchitectureGuess]
    infer_from_shapes: Callable[[Path, dict], dict]
    required: Callable[[dict], tuple[str, ...]]
    defaulted: tuple[str, ...] = ()
    dead_reason: Callable[[str, ModelConfig], str | None] = _nothing_dead
    hints: Callable[[list[str]], list[str]] = _no_hints


def string_keys(path: Path, where: str, values: dict) -> dict:
    """``values`` when every key is a printable string (keys are quoted in messages, one line each)."""
    odd = [k for k in values if not (isinstance(k, str) and k.isprintable())]
    if odd:
        raise CheckpointError(f"{path}: {where} keys must be printable strings, got {_short(odd[0])}")
    return values


def transform_value(path: Path, key: str, value: Any) -> Any:
    """An evaluation-transform setting of ``args``: a scalar, or (``mean``, ``std``, ``img_size``) a short
    sequence of numbers; anything else is one error naming the field."""
    if isinstance(value, (list, tuple)) and len(value) <= 4 and all(isinstance(v, numbers.Number) for v in value):
        return value
    return scalar(path, f"args.{key}", value)


def scalar(path: Path, where: str, value: Any) -> Any:
    """``value`` when it is what a configuration field holds (a number, string, bool or None); else one error
    naming the field (a tensor or container would print over many lines in the field's check)."""
    if not isinstance(value, (str, numbers.Number, np.bool_, type(None))):
        raise CheckpointError(f"{path}: {where} is a {type(value).__name__} ({_short(value)}), not a number or "
                              "string")
    return value


def coerce(value: Any, kind: str) -> Any:
    """Make argparse/numpy values match ModelConfig field types where that loses nothing."""
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind == "bool" and isinstance(value, np.bool_):
        return bool(value)
    return value


def strip_module_prefix(state_dict: dict, notes: list[str]) -> dict:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds, if every key has it."""
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        notes.append("stripped the 'module.' prefix ((Distributed)DataParallel) from every key")
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def shape(state_dict: dict, key: str, ndim: int) -> tuple[int, ...] | None:
    """The shape of ``state_dict[key]`` when it is a tensor of ``ndim`` dimensions, else None."""
    t = state_dict.get(key)
    return tuple(t.shape) if isinstance(t, torch.Tensor) and t.dim() == ndim else None
