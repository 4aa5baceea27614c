"""The bundled digits: scikit-learn's 8x8 handwritten digits (1797 samples, 16 grey levels).

They ship inside scikit-learn, so tests, examples and the small zoo models need no download.
Images are scaled to [0, 1], resized bilinearly to ``img_size`` and split with a fixed stratified
train/test split (``test_fraction``, ``seed``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..config import DataConfig, ModelConfig

from .common import TensorPairs, resize, stratified_split

NUM_CLASSES = 10


@lru_cache(maxsize=1)
def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """All samples as read-only arrays: images [1797, 8, 8] in [0, 1] (float32), labels [1797]."""
    from sklearn.datasets import load_digits as sklearn_digits  # here: importing sklearn takes seconds
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    # Shared by every caller through the cache: make accidental in-place edits fail loudly.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digit_images(img_size: int) -> torch.Tensor:
    """All digit images resized to ``img_size``: [1797, 1, img_size, img_size] float32 in [0, 1]."""
    images, _ = raw_digits()
    return resize(torch.tensor(images).unsqueeze(1), img_size)


def load_digits(data: DataConfig, model: ModelConfig, split: str) -> TensorPairs:
    """Static digits as [C, H, W] with C = ``model.in_channels`` (1, or 3 = replicated grey)."""
    _, labels = raw_digits()
    idx = stratified_split(labels, split, data.test_fraction, data.seed)
    x = digit_images(model.img_size)[idx]
    if model.in_channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return TensorPairs(x, torch.tensor(labels[idx]), NUM_CLASSES)
