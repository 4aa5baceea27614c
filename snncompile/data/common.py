"""Pieces shared by the dataset loaders: the error type, the in-memory dataset, split and resize."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLITS = ("train", "test")


class DataError(ValueError):
    """A data set cannot be provided: unsupported, missing or malformed files, config mismatch."""


class TensorPairs(Dataset):
    """Samples held in memory: ``x[i]`` (through ``transform`` when given) and ``y[i]`` (int64).

    ``transform`` lets large sets (CIFAR-10) stay compact as uint8 and be converted per item.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x, self.y = x, y.to(torch.int64)
        self.num_classes = num_classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        return (self.transform(x) if self.transform else x), self.y[i]


def stratified_split(labels: np.ndarray, split: str, test_fraction: float, seed: int) -> np.ndarray:
    """Indices of ``split`` in a fixed stratified train/test split (the bundled digits' rule)."""
    from sklearn.model_selection import train_test_split  # here: importing sklearn takes seconds every command
    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                   random_state=seed, stratify=labels)
    return train if split == "train" else test


def resize(x: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize the last two dims of ``x`` (any leading dims) to ``size`` x ``size``."""
    if x.shape[-2:] == (size, size):
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flat, size=(size, size), mode=mode, **kwargs)
    return out.reshape(*lead, size, size)
