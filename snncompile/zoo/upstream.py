"""Upstream training scripts' checkpoints: which backbone wrote a file, and what the file says.

Each backbone's reader is an :class:`~.upstream_format.UpstreamFormat` in its own module; ``FORMATS`` lists them in
the order they are asked (a reader claims the files it recognises; the Spike-Driven Transformer v1 reader, last,
takes any other timm checkpoint). What every upstream file shares is read here: the weights (timm's ``state_dict``,
or ``model`` in the MAE-style and torchvision-reference dicts), ``args``, the data set, metrics and the evaluation
transform.
"""
from __future__ import annotations

import argparse
import numbers
from pathlib import Path

from ..config import is_int
from .torchfile import CheckpointError
from .upstream_format import Parsed, UpstreamFormat, strip_module_prefix, transform_value
from .upstream_qkformer import QKFORMER_CIFAR10, QKFORMER_IMAGENET
from .upstream_sdt import SDT
from .upstream_sdt_v2 import SDT_V2
from .upstream_sdt_v3 import SDT_V3
from .upstream_spikformer import SPIKFORMER

FORMATS: dict[str, UpstreamFormat] = {f.backbone: f for f in (*SPIKFORMER, QKFORMER_CIFAR10, QKFORMER_IMAGENET, SDT_V2,
                                                                     SDT_V3, SDT)}
WEIGHT_KEYS = ("state_dict", "model")  # timm CheckpointSaver; MAE-style and torchvision-reference dicts
# upstream --dataset values -> DataConfig.dataset
_UPSTREAM_DATASETS = {"torch/cifar10": "cifar10", "cifar10": "cifar10", "cifar10-dvs": "cifar10-dvs",
                      "cifar10-dvs-tet": "cifar10-dvs",
                      "cifar10dvs": "cifar10-dvs", "ncaltech101": "ncaltech101",
                      "torch/imagenet": "imagenet", "imagenet": "imagenet"}
TRANSFORM_ARGS = ("img_size", "crop_pct", "interpolation", "mean", "std")  # timm train.py's evaluation transform


def is_upstream(obj: object) -> bool:
    """Whether ``obj`` (a file's top-level object) holds its weights where upstream scripts put them."""
    return isinstance(obj, dict) and any(key in obj for key in WEIGHT_KEYS)


def parse_upstream(path: Path, obj: dict) -> Parsed:
    notes: list[str] = []
    weights_key = next(key for key in WEIGHT_KEYS if key in obj)
    state_dict = obj[weights_key]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: {weights_key!r} is a {type(state_dict).__name__}, not a dict")
    state_dict = strip_module_prefix(dict(state_dict), notes)
    if "state_dict_ema" in obj:
        notes.append("file also holds state_dict_ema (EMA weights); loaded state_dict")
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    elif args is not None and not isinstance(args, dict):
        raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, not an argparse.Namespace")
    reader = next((f for f in FORMATS.values() if f.claims(obj, args, state_dict)), None)
    if reader is None:
        raise CheckpointError(f"{path}: {weights_key!r} holds weights of no backbone snncompile knows "
                              f"({', '.join(FORMATS)})")
    guess = reader.guess(path, obj, args, state_dict, notes)
    upstream_dataset = (args or {}).get("dataset")
    dataset = _UPSTREAM_DATASETS.get(upstream_dataset) if isinstance(upstream_dataset, str) else None
    metrics: dict = {}
    if is_int(obj.get("epoch")):
        metrics["epoch"] = obj["epoch"]
    if isinstance(obj.get("metric"), numbers.Real) and not isinstance(obj["metric"], bool):
        metrics["metric"] = float(obj["metric"])
        if args is not None and isinstance(args.get("eval_metric"), str):
            metrics["eval_metric"] = args["eval_metric"]
    transform = {k: transform_value(path, k, (args or {})[k]) for k in TRANSFORM_ARGS
                 if (args or {}).get(k) not in (None, "")}
    return Parsed("upstream", state_dict, dict(guess.fields), suggested_attention=guess.suggested_attention,
                  attention_note=guess.attention_note, metrics=metrics, notes=notes, dataset=dataset,
                  transform=transform)
