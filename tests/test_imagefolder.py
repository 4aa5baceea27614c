"""ImageNet / ImageFolder data: the layout, class numbering, errors, and timm's evaluation transform (checked
against torchvision's Resize + CenterCrop + Normalize, which timm composes, where torchvision is installed)."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from snncompile.config import DataConfig, ModelConfig
from snncompile.data import DataError, load_dataset
from snncompile.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, EvalTransform


def write_tree(root, sizes=((40, 30), (30, 50), (33, 33))):
    """root/{train,val}/{cat,ant}/ images of the given (width, height), random pixels."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "ant"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def model(**kw) -> ModelConfig:
    return ModelConfig(**{"img_size": 24, "num_classes": 1000, **kw})


def test_folder_layout_classes_and_shapes(tmp_path):
    root = write_tree(tmp_path)
    train = load_dataset(DataConfig(dataset="imagenet", root=str(root)), model(), "train")
    test = load_dataset(DataConfig(dataset="imagenet", root=str(root)), model(), "test")
    assert len(train) == len(test) == 6 and train.num_classes == 2
    assert [int(train[i][1]) for i in range(6)] == [0, 0, 0, 1, 1, 1]  # ant before cat
    assert all(train[i][0].shape == (3, 24, 24) and train[i][0].dtype == torch.float32 for i in range(6))
    assert [f.parent.parent.name for f in test.files] == ["val"] * 6


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_eval_transform_equals_torchvision(tmp_path, interpolation):
    transforms = pytest.importorskip("torchvision.transforms")
    mode = getattr(transforms.InterpolationMode, interpolation.upper())
    ours = EvalTransform(24, 0.9, interpolation)
    reference = transforms.Compose([transforms.Resize(int(24 / 0.9), interpolation=mode), transforms.CenterCrop(24),
                                    transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    rng = np.random.default_rng(1)
    for w, h in ((40, 30), (30, 51), (26, 26), (100, 27)):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert torch.allclose(ours(image), reference(image), atol=1e-6), (w, h)


def test_transform_from_checkpoint_args_or_timm_defaults():
    assert EvalTransform.from_args(None, 224) == EvalTransform(224, 0.875, "bicubic", IMAGENET_MEAN, IMAGENET_STD)
    args = {"img_size": 192, "crop_pct": 1.0, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": None}
    assert EvalTransform.from_args(args, 224) == EvalTransform(192, 1.0, "bilinear", (0.5,) * 3, IMAGENET_STD)
    assert EvalTransform.from_args({"interpolation": ""}, 64).interpolation == "bicubic"  # timm's '' means default
    with pytest.raises(DataError, match="interpolation 'cubic' is not one of"):
        EvalTransform.from_args({"interpolation": "cubic"}, 64)


def test_missing_folders_and_unreadable_images(tmp_path):
    data = DataConfig(dataset="imagenet", root=str(tmp_path))
    with pytest.raises(DataError, match="val is not a folder"):
        load_dataset(data, model(), "test")
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_dataset(data, model(), "test")
    (tmp_path / "val" / "x").mkdir()
    (tmp_path / "val" / "x" / "broken.jpg").write_bytes(b"not a jpeg")
    broken = load_dataset(data, model(), "test")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        broken[0]


def test_the_transform_of_an_upstream_checkpoints_args_reaches_the_loader(tmp_path):
    from upstream_files import small_cfg, trained_like, upstream_args, write_upstream
    from snncompile import load_checkpoint
    path = write_upstream(tmp_path / "c.pth.tar", trained_like(small_cfg(img_size=32)),
                          upstream_args(crop_pct=1.0, interpolation="bilinear", mean=None, std=[0.5, 0.5, 0.5]))
    loaded = load_checkpoint(path)
    assert loaded.transform == {"img_size": 32, "crop_pct": 1.0, "interpolation": "bilinear", "std": [0.5] * 3}
    root = write_tree(tmp_path / "data")
    data = DataConfig(dataset="imagenet", root=str(root))
    found = load_dataset(data, dataclasses.replace(loaded.config, num_classes=1000), "test", loaded.transform)
    assert found.transform == EvalTransform(32, 1.0, "bilinear", IMAGENET_MEAN, (0.5, 0.5, 0.5))
    assert found[0][0].shape == (3, 32, 32)
