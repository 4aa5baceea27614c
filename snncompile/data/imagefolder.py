"""ImageNet, and any data set laid out as ImageFolder: ``root/train/<class>/*`` and ``root/val/<class>/*``
images (``val`` is the test split), classes numbered in sorted folder-name order, images read one at a time.

Images go through the evaluation transform of upstream's timm training scripts (``timm.data.create_transform``
with ``is_training=False``): the shorter side resized to ``floor(img_size / crop_pct)`` with ``interpolation``,
a centre crop of ``img_size``, pixels scaled to [0, 1] and normalised with ``mean`` and ``std``.
:meth:`EvalTransform.from_args` reads these from a checkpoint's ``args`` where they are set, else takes timm's
defaults for a model without a pretrained config (crop_pct 0.875, bicubic, the ImageNet mean and std).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import DataConfig, ModelConfig
from .common import DataError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION = 0.875, "bicubic"
INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                  "lanczos": Image.LANCZOS}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
FOLDERS = {"train": "train", "test": "val"}
EXPECTED = "train/<class>/<image> and val/<class>/<image> (ImageFolder layout: one folder per class)"


@dataclass(frozen=True)
class EvalTransform:
    """timm's evaluation transform: resize the shorter side to ``floor(img_size / crop_pct)``, centre-crop
    ``img_size``, normalise."""

    img_size: int
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = DEFAULT_INTERPOLATION
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @staticmethod
    def from_args(args: Mapping | None, img_size: int) -> "EvalTransform":
        """The transform a timm ``train.py`` run with ``args`` evaluates with (unset or empty fields: timm's
        defaults; ``args.img_size`` wins over ``img_size``)."""
        args = {k: v for k, v in (args or {}).items() if v not in (None, "")}
        found = EvalTransform(int(args.get("img_size", img_size)), float(args.get("crop_pct", DEFAULT_CROP_PCT)),
                              str(args.get("interpolation", DEFAULT_INTERPOLATION)),
                              tuple(map(float, args.get("mean", IMAGENET_MEAN))),
                              tuple(map(float, args.get("std", IMAGENET_STD))))
        if found.interpolation not in INTERPOLATIONS:
            raise DataError(f"interpolation {found.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        return found

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        scale = math.floor(self.img_size / self.crop_pct)
        w, h = image.size  # the shorter side to ``scale``, the longer as torchvision's Resize rounds it
        size = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
        image = image.resize(size, INTERPOLATIONS[self.interpolation])
        left, top = int(round((size[0] - self.img_size) / 2.0)), int(round((size[1] - self.img_size) / 2.0))
        image = image.crop((left, top, left + self.img_size, top + self.img_size))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        return (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]


class ImageFolder(Dataset):
    """Images of one split, read and transformed per item; ``y`` the class folder's index."""

    def __init__(self, files: list[Path], labels: list[int], num_classes: int, transform: EvalTransform):
        self.files, self.labels, self.num_classes, self.transform = files, labels, num_classes, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with Image.open(self.files[i]) as image:
                x = self.transform(image)
        except OSError as e:
            raise DataError(f"{self.files[i]}: not a readable image ({e})") from None
        return x, torch.tensor(self.labels[i], dtype=torch.int64)


def load_image_folder(data: DataConfig, model: ModelConfig, split: str,
                      transform: EvalTransform | None = None) -> ImageFolder:
    """The ``split`` of the ImageFolder tree under ``data.root`` with ``transform`` (default: timm's
    evaluation transform for ``model.img_size``)."""
    if not data.root:
        raise DataError(f"dataset {data.dataset!r} is read from a local folder: pass --data-root with {EXPECTED}")
    folder = Path(data.root) / FOLDERS[split]
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected {EXPECTED} under {data.root}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class folders; expected {EXPECTED}")
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); expected {EXPECTED}")
    return ImageFolder(files, labels, len(classes), transform or EvalTransform.from_args(None, model.img_size))


__all__ = ["EvalTransform", "ImageFolder", "load_image_folder", "IMAGENET_MEAN", "IMAGENET_STD"]
