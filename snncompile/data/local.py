"""Loaders for user-supplied data sets under ``data.root``: CIFAR-10 and folders of event frames.

CIFAR-10 is read from the official binary version (``cifar-10-batches-bin``, plain bytes) or the
python version (``cifar-10-batches-py``, pickles).  Pickles can run arbitrary code when loaded, so
the python version goes through an unpickler that accepts only numpy's array reconstruction.

Event data sets (CIFAR10-DVS, N-Caltech101) are expected as already-framed ``.npz`` files,
``root/<class>/*.npz`` (or ``root/train/<class>/*.npz`` and ``root/test/<class>/*.npz``), each with
an array ``frames`` [T0, 2, H0, W0] of ON/OFF event counts; ``np.load`` runs with
``allow_pickle=False``.  Frames are re-binned to ``time_steps`` and resized per item.
"""
from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig, ModelConfig

from .common import DataError, TensorPairs, resize

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR_CLASSES = 10
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + CHW pixel bytes


def _root(data: DataConfig, expected: str) -> Path:
    """``data.root`` as an existing non-empty directory, or a DataError saying what it must hold."""
    if not data.root:
        raise DataError(f"dataset {data.dataset!r} is read from a local directory: set data.root "
                        f"to a directory holding {expected}")
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory; expected it to hold {expected}")
    if not any(root.iterdir()):
        raise DataError(f"data.root {root} is empty; expected it to hold {expected}")
    return root


# -- CIFAR-10 --------------------------------------------------------------------------------------

def _cifar_batches(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _cifar_expected(split: str) -> str:
    names = _cifar_batches(split)
    binary = ", ".join(n + ".bin" for n in names)
    return (f"the CIFAR-10 {split} batches: cifar-10-batches-bin/{{{binary}}} (binary version) or "
            f"cifar-10-batches-py/{{{', '.join(names)}}} (python version), data.root being that "
            f"folder or its parent")


def _find_cifar(root: Path, split: str) -> tuple[str, list[Path]]:
    """The format ("bin" or "py") and the batch files of ``split``; binary is preferred."""
    names = _cifar_batches(split)
    folders = [root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"]
    missing: list[Path] = []
    for folder in folders:
        for fmt, suffix in (("bin", ".bin"), ("py", "")):
            files = [folder / (n + suffix) for n in names]
            absent = [f for f in files if not f.is_file()]
            if not absent:
                return fmt, files
            if len(absent) < len(files):
                missing += absent
    missing_note = f" (incomplete: missing {', '.join(map(str, missing))})" if missing else ""
    raise DataError(f"data.root {root}: no complete set of {_cifar_expected(split)}{missing_note}")


def _read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {CIFAR_RECORD}-byte "
                        f"CIFAR-10 records (1 label byte + 3072 pixel bytes)")
    records = raw.reshape(-1, CIFAR_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


# Exactly what a pickled dict of numpy arrays and int lists refers to; everything else is refused.
_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),   # ndarray.__reduce__, protocols 0-4
    ("numpy._core.multiarray", "_reconstruct"),  # the same, pickled by numpy >= 2
    ("numpy.core.numeric", "_frombuffer"),       # ndarray.__reduce_ex__, protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes (the array data) in protocol 2
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array-reconstruction globals."""

    def __init__(self, file, path: Path):
        # encoding="bytes": the official batches are Python 2 pickles with byte-string keys.
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise DataError(f"{self.path}: refusing to unpickle global {module}.{name}: a CIFAR-10 "
                            f"batch needs only numpy arrays and plain lists, and anything else "
                            f"could run code (the file may be malicious)")
        return super().find_class(module, name)


def _read_cifar_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # any failure inside unpickling means the file is not a batch
        raise DataError(f"{path}: not a readable CIFAR-10 python batch "
                        f"({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a pickled dict with keys b'data' and b'labels'")
    pixels, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 2
            and pixels.shape[1] == 3072):
        shape = getattr(pixels, "shape", None)
        raise DataError(f"{path}: b'data' must be a uint8 array [N, 3072], got "
                        f"{type(pixels).__name__} {shape or ''}".rstrip())
    if len(pixels) == 0:
        raise DataError(f"{path}: holds no images")
    if labels.shape != (len(pixels),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: b'labels' must be {len(pixels)} integers, got shape "
                        f"{labels.shape} of {labels.dtype}")
    return pixels.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_transform(pixels: torch.Tensor, img_size: int) -> torch.Tensor:
    # A module-level function (through functools.partial) so DataLoader workers can pickle it.
    x = pixels.to(torch.float32) / 255
    mean = torch.tensor(CIFAR_MEAN)[:, None, None]
    std = torch.tensor(CIFAR_STD)[:, None, None]
    return resize((x - mean) / std, img_size)


def load_cifar10(data: DataConfig, model: ModelConfig, split: str) -> TensorPairs:
    """CIFAR-10 as normalised [3, img_size, img_size] images (kept as uint8 until read)."""
    root = _root(data, _cifar_expected(split))
    fmt, files = _find_cifar(root, split)
    read = _read_cifar_bin if fmt == "bin" else _read_cifar_py
    parts = [read(f) for f in files]
    for f, (_, labels) in zip(files, parts):
        if labels.min() < 0 or labels.max() >= CIFAR_CLASSES:
            raise DataError(f"{f}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    pixels = torch.from_numpy(np.concatenate([p for p, _ in parts]))
    labels = torch.from_numpy(np.concatenate([y for _, y in parts]))
    return TensorPairs(pixels, labels, CIFAR_CLASSES,
                       transform=partial(_cifar_transform, img_size=model.img_size))


# -- event-frame folders (CIFAR10-DVS, N-Caltech101) -----------------------------------------------

EVENT_EXPECTED = ("one folder per class, <class>/*.npz (or train/<class>/*.npz and "
                  "test/<class>/*.npz), each file with an array 'frames' [T, 2, H, W] of "
                  "event counts")


def rebin(frames: np.ndarray, time_steps: int) -> np.ndarray:
    """Sum ``frames`` [T0, ...] over ``time_steps`` consecutive groups of (nearly) equal length.

    When T0 is a multiple of ``time_steps`` the groups are exactly T0 / time_steps long;
    otherwise ``np.array_split`` makes the first T0 mod time_steps groups one frame longer.
    """
    return np.stack([group.sum(axis=0) for group in np.array_split(frames, time_steps)])


def _read_frames(path: Path, time_steps: int) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # np.load raises many types for a file that is not an archive
        raise DataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with an array 'frames', found a "
                        f"single array")
    with archive:
        if "frames" not in archive.files:
            raise DataError(f"{path}: no array named 'frames' (found: {', '.join(archive.files)})")
        try:
            frames = archive["frames"]
        except ValueError as e:  # object arrays need pickle, which stays off
            raise DataError(f"{path}: cannot read 'frames': {e}") from None
    if frames.ndim != 4 or frames.shape[1] != 2 or frames.dtype.kind not in "biuf":
        raise DataError(f"{path}: 'frames' must be a numeric array [T, 2, H, W] (ON/OFF counts), "
                        f"got shape {frames.shape} of {frames.dtype}")
    if len(frames) < time_steps:
        raise DataError(f"{path}: {len(frames)} frames cannot be re-binned into "
                        f"time_steps={time_steps}")
    return frames.astype(np.float64)


class EventFolder(Dataset):
    """Event-frame files read on access: [time_steps, 2, img_size, img_size] float32 counts."""

    def __init__(self, files: list[Path], labels: list[int], num_classes: int, time_steps: int,
                 img_size: int, resize_mode: str):
        self.files, self.labels = files, labels
        self.num_classes = num_classes
        self.time_steps, self.img_size, self.resize_mode = time_steps, img_size, resize_mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames = rebin(_read_frames(self.files[i], self.time_steps), self.time_steps)
        x = resize(torch.from_numpy(frames).to(torch.float32), self.img_size, self.resize_mode)
        return x, torch.tensor(self.labels[i], dtype=torch.int64)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its sorted .npz files, for each class folder (not hidden) in ``folder``."""
    classes = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(d.glob("*.npz"))
        if not files:
            raise DataError(f"class folder {d} holds no .npz files; expected {EVENT_EXPECTED}")
        classes[d.name] = files
    if not classes:
        raise DataError(f"{folder} has no class folders; expected {EVENT_EXPECTED}")
    return classes


def _seeded_split(classes: dict[str, list[Path]], split: str, seed: int) -> dict[str, list[Path]]:
    """90/10 per class: after a seeded shuffle, floor(n / 10) files are test, the rest train."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, files in classes.items():
        order = rng.permutation(len(files))
        n_train = len(files) - len(files) // 10
        keep = order[:n_train] if split == "train" else order[n_train:]
        chosen[name] = [files[i] for i in sorted(keep)]
    return chosen


def load_event_folder(data: DataConfig, model: ModelConfig, split: str) -> EventFolder:
    """CIFAR10-DVS / N-Caltech101-style frames; bilinear resize, nearest for ncaltech101."""
    root = _root(data, EVENT_EXPECTED)
    if (root / "train").is_dir() and (root / "test").is_dir():
        names = list(_class_files(root / "train"))
        chosen = _class_files(root / split)
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise DataError(f"{root / 'test'}: classes {', '.join(unknown)} are not in "
                            f"{root / 'train'}")
    else:
        chosen = _seeded_split(_class_files(root), split, data.seed)
        names = list(chosen)
    label_of = {name: i for i, name in enumerate(names)}
    files = [f for name in chosen for f in chosen[name]]
    labels = [label_of[name] for name in chosen for _ in chosen[name]]
    if not files:
        raise DataError(f"data.root {root}: the {split} split is empty (classes too small to hold "
                        f"out 10% of their files)")
    mode = "nearest" if data.dataset == "ncaltech101" else "bilinear"
    return EventFolder(files, labels, len(names), model.time_steps, model.img_size, mode)
