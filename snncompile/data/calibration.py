"""Where the samples that calibrate a compiled model come from, and a line saying which they were.

Calibration reads only each node's range on a few inputs (the real-valued input's quantisation, attention's
K scale, the neurons' headroom), so any inputs shaped like the data loader's will do. ``calibration_samples``
takes a source:

- ``train``: the first samples of the model's training set (never test samples);
- a ``.npy`` / ``.pt`` file: a tensor ``[N, C, H, W]`` (images) or ``[N, T, C, H, W]`` (event frames) shaped
  as the data loader gives them (``.pt`` read by the safe reader: no code runs);
- ``synthetic``: inputs drawn under a stated assumption, needing no data at all: images uniform pixels in
  [0, 1] normalised with the data set's mean and std (what its loader does to real pixels; unknown data
  sets use timm's ImageNet statistics), event frames independent Poisson counts of mean
  ``SYNTHETIC_EVENT_RATE`` per pixel, polarity and step;
- ``auto`` (the default of ``snncompile compile``): ``train`` when the data set can be loaded, else
  ``synthetic``.

How many: ``config.CALIBRATION_SAMPLES`` unless told otherwise. A node's range is the extreme of every
element at every step of every sample, so it settles within a few samples, and only a few decisions read
it (a group's scale where its peak would leave the neuron input range, the bits of an event input,
A2OS2A's K): ``benchmarks/calibration.py`` compiles trained zoo models on 1 to 256 samples and found the
same integer accuracy and agreement with the float model's predictions at every count it measured (README,
"Lowering"), while calibration time grows with the count (the float graph runs on every sample: most of a
paper-size model's compile time).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig, ModelConfig
from ..zoo.torchfile import read_torch_file
from . import load_dataset
from .common import DataError
from .imagefolder import IMAGENET_MEAN, IMAGENET_STD
from .local import CIFAR_MEAN, CIFAR_STD

SOURCES = ("auto", "train", "synthetic")
SYNTHETIC_EVENT_RATE = 0.2
#: per data set, the (mean, std) its loader normalises pixels with; the digits are plain [0, 1]
NORMALISATION = {"cifar10": (CIFAR_MEAN, CIFAR_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                 "digits": ((0.0,), (1.0,))}


@dataclass(frozen=True)
class CalibrationSet(Dataset):
    """Calibration inputs ``[N, ...]`` as a data loader batches them, and where they came from. As a data set
    its items are ``(x, -1)``: calibration reads no label."""

    inputs: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inputs[i], -1


def synthetic_samples(model: ModelConfig, dataset: str, count: int, seed: int = 0) -> CalibrationSet:
    """``count`` inputs drawn under the module docstring's assumption for ``dataset``."""
    generator = torch.Generator().manual_seed(seed)
    if model.dvs_mode:
        shape = (count, model.time_steps, model.in_channels, model.img_size, model.img_size)
        counts = torch.poisson(torch.full(shape, SYNTHETIC_EVENT_RATE), generator=generator)
        return CalibrationSet(counts, f"synthetic: {count} event-frame samples, Poisson counts of mean "
                                      f"{SYNTHETIC_EVENT_RATE}")
    mean, std = NORMALISATION.get(dataset, (IMAGENET_MEAN, IMAGENET_STD))
    pixels = torch.rand(count, model.in_channels, model.img_size, model.img_size, generator=generator)
    shift, spread = (torch.tensor(v).expand(model.in_channels)[:, None, None] if len(v) == 1
                     else torch.tensor(v[:model.in_channels])[:, None, None] for v in (mean, std))
    return CalibrationSet((pixels - shift) / spread,
                          f"synthetic: {count} uniform images normalised with mean {list(mean)} std {list(std)}")


def file_samples(path: Path, model: ModelConfig, count: int) -> CalibrationSet:
    """The first ``count`` samples of a user tensor file, checked against the model's input shape."""
    try:
        x = np.load(path, allow_pickle=False) if path.suffix == ".npy" else read_torch_file(path)
    except Exception as e:  # any failure to read means the file is not a tensor file
        raise DataError(f"{path}: cannot read a tensor from it ({type(e).__name__}: {e})") from None
    x = torch.as_tensor(x, dtype=torch.float32) if isinstance(x, (np.ndarray, torch.Tensor)) else None
    frame = (model.in_channels, model.img_size, model.img_size)
    expected = (model.time_steps, *frame) if model.dvs_mode else frame
    if x is None or x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        got = "not a tensor" if x is None else f"shape {list(x.shape)}"
        raise DataError(f"{path}: calibration samples must be a tensor [N, {', '.join(map(str, expected))}] "
                        f"for this model, got {got}")
    return CalibrationSet(x[:count].contiguous(), f"file {path} ({min(count, len(x))} samples)")


def calibration_samples(source: str, data: DataConfig, model: ModelConfig, count: int,
                        transform: Mapping | None = None) -> CalibrationSet:
    """``count`` calibration inputs from ``source`` (see the module docstring); ``transform`` as
    :func:`~snncompile.data.load_dataset` takes it."""
    if source not in SOURCES:
        path = Path(source)
        if path.suffix not in (".npy", ".pt", ".pth"):
            raise DataError(f"calibration source {source!r} is none of {', '.join(SOURCES)} nor a .npy/.pt file")
        if not path.is_file():
            raise DataError(f"calibration file {path} does not exist")
        return file_samples(path, model, count)
    if source == "synthetic":
        return synthetic_samples(model, data.dataset, count, seed=data.seed)
    try:
        train = load_dataset(data, model, "train", transform)
    except DataError as e:
        if source == "train":
            raise
        found = synthetic_samples(model, data.dataset, count, seed=data.seed)
        return CalibrationSet(found.inputs, f"{found.source} (the {data.dataset} training set is not at hand: {e})")
    n = min(count, len(train))
    return CalibrationSet(torch.stack([train[i][0] for i in range(n)]), f"{data.dataset} train ({n} samples)")


__all__ = ["CalibrationSet", "SOURCES", "SYNTHETIC_EVENT_RATE", "NORMALISATION", "calibration_samples",
           "file_samples", "synthetic_samples"]
