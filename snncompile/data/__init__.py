"""Data sets for training and evaluating the zoo models: ``load_dataset(data, model, split)``.

Items are ``(x, y)``: ``x`` float32, a static image [C, H, W] (the model repeats it over T) or
event frames [T, C, H, W]; ``y`` an int64 scalar class index.

- ``digits``: scikit-learn's bundled 8x8 digits; x [1 or 3, S, S] in [0, 1].
- ``event-digits``: the digits seen by a simulated event camera (see ``events``); [T, 2, S, S].
- ``cifar10``: CIFAR-10 binary or python batches under ``data.root``; [3, S, S] normalised.
- ``cifar10-dvs``, ``ncaltech101``: ``<class>/*.npz`` event frames under ``data.root``;
  [T, 2, S, S] counts.
- ``imagenet``: an ImageFolder tree (``train/<class>/*``, ``val/<class>/*``) under ``data.root``, through
  timm's evaluation transform (``imagefolder``); [3, S, S] normalised.

S is ``model.img_size`` and T ``model.time_steps``.
"""
from __future__ import annotations

from typing import Mapping

from torch.utils.data import Dataset

from ..config import DataConfig, ModelConfig

from .common import SPLITS, DataError
from .digits import load_digits
from .events import load_event_digits
from .imagefolder import EvalTransform, load_image_folder
from .local import load_cifar10, load_event_folder

__all__ = ["DataError", "load_dataset", "LOADERS", "CHANNELS"]

LOADERS = {
    "digits": load_digits,
    "event-digits": load_event_digits,
    "cifar10": load_cifar10,
    "cifar10-dvs": load_event_folder,
    "ncaltech101": load_event_folder,
    "imagenet": load_image_folder,
}

# Input channels each data set provides; digits can also be fed as replicated grey RGB.
CHANNELS = {
    "digits": (1, 3),
    "event-digits": (2,),
    "cifar10": (3,),
    "cifar10-dvs": (2,),
    "ncaltech101": (2,),
    "imagenet": (3,),
}


def load_dataset(data: DataConfig, model: ModelConfig, split: str, transform: Mapping | None = None) -> Dataset:
    """The ``split`` ("train" or "test") of ``data.dataset``, shaped for ``model``; ``transform``: the
    evaluation transform settings a checkpoint's ``args`` give (``LoadedCheckpoint.transform``: image folders
    only)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if data.problems():
        raise DataError("invalid data config: " + "; ".join(data.problems()))
    if data.dataset not in LOADERS:
        raise DataError(f"no loader for dataset {data.dataset!r}: snncompile can load "
                        f"{', '.join(LOADERS)}")
    channels = CHANNELS[data.dataset]
    if model.in_channels not in channels:
        raise DataError(f"model.in_channels={model.in_channels} does not fit dataset "
                        f"{data.dataset!r}, which provides "
                        f"{' or '.join(map(str, channels))} channel(s)")
    if LOADERS[data.dataset] is load_image_folder:
        dataset = load_image_folder(data, model, split, EvalTransform.from_args(transform, model.img_size))
    else:
        dataset = LOADERS[data.dataset](data, model, split)
    if dataset.num_classes > model.num_classes:
        raise DataError(f"dataset {data.dataset!r} has {dataset.num_classes} classes but "
                        f"model.num_classes={model.num_classes}")
    return dataset
