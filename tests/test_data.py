"""Tests of snncompile.data: bundled digits, generated event digits and the local-file loaders."""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid

from snncompile.data import DataError, load_dataset
from snncompile.data.common import stratified_split
from snncompile.data.digits import raw_digits
from snncompile.data.events import CONTRAST_THRESHOLD, LOG_EPS, _dvs_events, simulate_dvs
from snncompile.data.local import CIFAR_MEAN, CIFAR_STD
from snncompile.config import DataConfig, ModelConfig


def model(**kw) -> ModelConfig:
    return ModelConfig(**{"img_size": 16, "in_channels": 1, "time_steps": 4, **kw})


# -- bundled digits --------------------------------------------------------------------------------

def test_digits_shapes_ranges_and_labels():
    train = load_dataset(DataConfig(dataset="digits"), model(), "train")
    test = load_dataset(DataConfig(dataset="digits"), model(), "test")
    assert len(train) + len(test) == 1797
    assert len(test) == math.ceil(0.2 * 1797)
    x, y = test[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64
    assert train.x.min() >= 0 and train.x.max() <= 1 and train.x.max() > 0.9
    # Stratified: every class keeps its share of the test set (to within rounding).
    _, labels = raw_digits()
    share = np.bincount(labels) * 0.2
    assert np.all(np.abs(np.bincount(test.y.numpy(), minlength=10) - share) <= 1)


def test_digits_split_is_fixed_disjoint_and_seeded():
    _, labels = raw_digits()
    train = stratified_split(labels, "train", 0.2, 0)
    test = stratified_split(labels, "test", 0.2, 0)
    assert not set(train) & set(test)
    assert sorted(np.concatenate([train, test])) == list(range(1797))
    np.testing.assert_array_equal(test, stratified_split(labels, "test", 0.2, 0))
    assert not np.array_equal(test, stratified_split(labels, "test", 0.2, 1))
    # At the native 8x8 size the samples are the raw images of exactly those indices.
    ds = load_dataset(DataConfig(dataset="digits"), model(img_size=8), "test")
    images, _ = raw_digits()
    np.testing.assert_array_equal(ds.x[:, 0].numpy(), images[test])
    np.testing.assert_array_equal(ds.y.numpy(), labels[test])


def test_digits_as_rgb_replicate_grey():
    x, _ = load_dataset(DataConfig(dataset="digits"), model(in_channels=3), "train")[5]
    assert x.shape == (3, 16, 16)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])


# -- event digits ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def event_sets():
    data = DataConfig(dataset="event-digits")
    m = model(in_channels=2)
    return load_dataset(data, m, "train"), load_dataset(data, m, "test")


def test_event_digits_shapes_counts_polarities(event_sets):
    train, test = event_sets
    assert len(train) + len(test) == 1797
    x, y = train[0]
    assert x.shape == (4, 2, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(train.x, train.x.round()) and train.x.min() >= 0
    # Every recording has ON and OFF events, in every frame.
    assert (train.x.sum(dim=(3, 4)) > 0).all()


def test_event_digits_are_separable(event_sets):
    train, test = event_sets
    # Nearest centroid on the raw counts (about 0.87): a deliberately weak but instant classifier.
    flat = lambda ds: ds.x.reshape(len(ds), -1).numpy()  # noqa: E731
    clf = NearestCentroid().fit(flat(train), train.y.numpy())
    assert clf.score(flat(test), test.y.numpy()) > 0.8


_SUBSET_HASH = """
import hashlib
from snncompile.data.digits import digit_images
from snncompile.data.events import simulate_dvs
print(hashlib.sha256(simulate_dvs(digit_images(16)[:64], 4, 0).numpy().tobytes()).hexdigest())
"""


def test_event_digits_deterministic_per_seed():
    from snncompile.data.digits import digit_images

    scene = digit_images(16)[:64]
    a, b = simulate_dvs(scene, 4, 0), simulate_dvs(scene, 4, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, simulate_dvs(scene, 4, 1))
    other = subprocess.run([sys.executable, "-c", _SUBSET_HASH], capture_output=True, text=True,
                           check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert other.stdout.strip() == hashlib.sha256(a.numpy().tobytes()).hexdigest()


def test_dvs_pixel_model_by_hand():
    # One bright pixel moved exactly one pixel right and back: the pixel it enters rises from
    # log(eps) to log(1 + eps), i.e. floor(log(11) / C) = 11 ON events; the one it leaves falls.
    scene = torch.zeros(1, 1, 4, 4)
    scene[0, 0, 1, 1] = 1.0
    path = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    on, off = _dvs_events(scene, path)
    n = math.floor(math.log((1 + LOG_EPS) / LOG_EPS) / CONTRAST_THRESHOLD)
    assert n == 11
    expected_on = torch.zeros(2, 1, 4, 4)
    expected_on[0, 0, 1, 2] = n
    expected_on[1, 0, 1, 1] = n
    assert torch.equal(on, expected_on)
    assert torch.equal(off, expected_on.flip(0))


def test_event_noise_rate_on_a_black_scene():
    x = simulate_dvs(torch.zeros(200, 1, 16, 16), 4, 3)
    per_recording = x.sum(dim=1)  # noise events per pixel and polarity; 0.05 expected
    assert 0.045 < per_recording.mean() < 0.055
    assert torch.equal(x, x.round())


# -- load_dataset checks ---------------------------------------------------------------------------

def test_bad_split_and_unsupported_dataset():
    with pytest.raises(ValueError, match="'valid'"):
        load_dataset(DataConfig(), model(), "valid")
    with pytest.raises(DataError, match="dataset 'imagenet' is read from a local folder: pass --data-root"):
        load_dataset(DataConfig(dataset="imagenet"), model(num_classes=1000, in_channels=3), "train")


@pytest.mark.parametrize("dataset, channels", [("event-digits", 3), ("digits", 2), ("cifar10", 1),
                                               ("cifar10-dvs", 3)])
def test_channel_mismatch(dataset, channels):
    with pytest.raises(DataError, match=rf"in_channels={channels}.*'{dataset}'"):
        load_dataset(DataConfig(dataset=dataset, root="/nonexistent"),
                     model(in_channels=channels), "train")


def test_too_few_model_classes():
    with pytest.raises(DataError, match="10 classes but model.num_classes=5"):
        load_dataset(DataConfig(), model(num_classes=5), "train")


# -- CIFAR-10 from local files ---------------------------------------------------------------------

def _cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def _write_cifar_bin(folder, batches):
    folder.mkdir(parents=True)
    for name, (pixels, labels) in batches.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None],
                                  pixels.reshape(len(pixels), -1)], axis=1)
        records.tofile(folder / f"{name}.bin")


def _write_cifar_py(folder, batches, protocol):
    folder.mkdir(parents=True)
    for name, (pixels, labels) in batches.items():
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                 b"data": pixels.reshape(len(pixels), -1)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.fixture
def cifar_batches():
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: _cifar_images(3, seed) for seed, name in enumerate(names)}


def _normalised(pixels: np.ndarray) -> np.ndarray:
    mean = np.array(CIFAR_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(CIFAR_STD, dtype=np.float32)[:, None, None]
    return (pixels.astype(np.float32) / 255 - mean) / std


def test_cifar10_binary(tmp_path, cifar_batches):
    _write_cifar_bin(tmp_path / "cifar-10-batches-bin", cifar_batches)
    m = model(img_size=32, in_channels=3)
    for root in (tmp_path, tmp_path / "cifar-10-batches-bin"):  # the parent or the folder itself
        test = load_dataset(DataConfig(dataset="cifar10", root=str(root)), m, "test")
        pixels, labels = cifar_batches["test_batch"]
        assert len(test) == 3
        for i in range(3):
            x, y = test[i]
            assert x.dtype == torch.float32 and y.item() == labels[i]
            np.testing.assert_allclose(x.numpy(), _normalised(pixels[i]), rtol=1e-5, atol=1e-5)
    train = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), m, "train")
    assert len(train) == 15
    assert train[14][1].item() == cifar_batches["data_batch_5"][1][2]
    small = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), model(in_channels=3),
                         "train")
    assert small[0][0].shape == (3, 16, 16)


def test_cifar10_binary_errors(tmp_path, cifar_batches):
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar_bin(folder, cifar_batches)
    data, m = DataConfig(dataset="cifar10", root=str(tmp_path)), model(in_channels=3)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="missing .*data_batch_3.bin"):
        load_dataset(data, m, "train")
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match="test_batch.bin: 3000 bytes is not a whole number"):
        load_dataset(data, m, "test")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python_matches_binary(tmp_path, cifar_batches, protocol):
    _write_cifar_py(tmp_path / "py" / "cifar-10-batches-py", cifar_batches, protocol)
    _write_cifar_bin(tmp_path / "bin" / "cifar-10-batches-bin", cifar_batches)
    m = model(img_size=32, in_channels=3)
    for split in ("train", "test"):
        py = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "py")), m, split)
        bn = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "bin")), m, split)
        assert torch.equal(py.x, bn.x) and torch.equal(py.y, bn.y)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_python_refuses_malicious_pickle(tmp_path, cifar_batches):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder, cifar_batches, protocol=4)
    marker = tmp_path / "pwned"
    pixels, labels = cifar_batches["test_batch"]
    payload = {b"data": pixels.reshape(3, -1), b"labels": [int(v) for v in labels],
               b"batch_label": _Exploit(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"test_batch: refusing to unpickle global \w+\.system"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), model(in_channels=3),
                     "test")
    assert not marker.exists()


def test_cifar10_python_malformed(tmp_path, cifar_batches):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder, cifar_batches, protocol=4)
    data, m = DataConfig(dataset="cifar10", root=str(tmp_path)), model(in_channels=3)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 python batch"):
        load_dataset(data, m, "test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": [1, 2], b"labels": [0]}))
    with pytest.raises(DataError, match=r"b'data' must be a uint8 array \[N, 3072\]"):
        load_dataset(data, m, "test")


# -- event-frame folders ---------------------------------------------------------------------------

CLASSES = ("dog", "airplane", "cat")  # written unsorted: labels must follow the sorted names


def _write_event_folder(root, t0=6, per_class=10, size=8, seed=0):
    rng = np.random.default_rng(seed)
    frames = {}
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            f = rng.integers(0, 5, (t0, 2, size, size)).astype(np.float32)
            np.savez(root / name / f"{i:03d}.npz", frames=f)
            frames[root / name / f"{i:03d}.npz"] = f
    return frames


def _items(ds):
    return {path: ds[i] for i, path in enumerate(ds.files)}


def test_event_folder_rebinning_and_split(tmp_path):
    frames = _write_event_folder(tmp_path)
    data = DataConfig(dataset="cifar10-dvs", root=str(tmp_path), seed=7)
    m = model(img_size=8, in_channels=2, time_steps=4)
    train, test = load_dataset(data, m, "train"), load_dataset(data, m, "test")
    assert (len(train), len(test)) == (27, 3)
    assert not set(train.files) & set(test.files)
    assert sorted(map(str, train.files + test.files)) == sorted(map(str, frames))
    assert sorted(test.labels) == [0, 1, 2]  # one held-out file per class
    assert load_dataset(data, m, "test").files == test.files
    for path, (x, y) in _items(test).items():
        f = frames[path]
        # 6 frames into 4 bins: np.array_split groups them as [2, 2, 1, 1].
        expected = np.stack([f[0] + f[1], f[2] + f[3], f[4], f[5]])
        np.testing.assert_array_equal(x.numpy(), expected)
        assert x.dtype == torch.float32
        assert y.item() == sorted(CLASSES).index(path.parent.name)


def test_event_folder_resize(tmp_path):
    frames = _write_event_folder(tmp_path, t0=8, per_class=2)
    m = model(img_size=4, in_channels=2, time_steps=4)
    for dataset in ("cifar10-dvs", "ncaltech101"):
        ds = load_dataset(DataConfig(dataset=dataset, root=str(tmp_path)), m, "train")
        for path, (x, _) in _items(ds).items():
            binned = frames[path].reshape(4, 2, 2, 8, 8).sum(axis=1)  # 8 frames -> pairs
            if dataset == "cifar10-dvs":  # bilinear halving = mean of each 2x2 block
                expected = binned.reshape(4, 2, 4, 2, 4, 2).mean(axis=(3, 5))
            else:  # nearest keeps integer counts: the top-left pixel of each block
                expected = binned[..., ::2, ::2]
            np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)


def test_event_folder_train_test_subfolders(tmp_path):
    _write_event_folder(tmp_path / "train", per_class=3)
    _write_event_folder(tmp_path / "test", per_class=2, seed=1)
    data = DataConfig(dataset="cifar10-dvs", root=str(tmp_path))
    m = model(img_size=8, in_channels=2)
    assert len(load_dataset(data, m, "train")) == 9
    test = load_dataset(data, m, "test")
    assert len(test) == 6 and all(p.parent.parent.name == "test" for p in test.files)


def test_event_folder_bad_files(tmp_path):
    _write_event_folder(tmp_path, per_class=1)
    data = DataConfig(dataset="cifar10-dvs", root=str(tmp_path))
    bad = tmp_path / "cat" / "000.npz"
    cases = [
        (lambda: np.savez(bad, counts=np.zeros((6, 2, 8, 8))), "no array named 'frames'"),
        (lambda: np.savez(bad, frames=np.zeros((6, 3, 8, 8))), r"must be a numeric array \[T, 2"),
        (lambda: np.savez(bad, frames=np.zeros((2, 2, 8, 8))), "2 frames cannot be re-binned"),
        (lambda: np.savez(bad, frames=np.array([{}], dtype=object)), "cannot read 'frames'"),
        (lambda: bad.write_bytes(b"garbage"), "cannot read as .npz"),
    ]
    for write, message in cases:
        write()
        ds = load_dataset(data, model(img_size=8, in_channels=2, time_steps=4), "train")
        i = ds.files.index(bad)
        with pytest.raises(DataError, match=message) as err:
            ds[i]
        assert str(bad) in str(err.value)


def test_event_folder_layout_errors(tmp_path):
    m = model(img_size=8, in_channels=2)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "note.txt").write_text("")
    with pytest.raises(DataError, match=f"class folder {tmp_path / 'cat'} holds no .npz files"):
        load_dataset(DataConfig(dataset="cifar10-dvs", root=str(tmp_path)), m, "train")
    with pytest.raises(DataError, match="101 classes but model.num_classes=10"):
        for i in range(101):
            (tmp_path / f"c{i:03d}").mkdir()
            np.savez(tmp_path / f"c{i:03d}" / "0.npz", frames=np.zeros((4, 2, 8, 8)))
        (tmp_path / "cat" / "note.txt").unlink()
        (tmp_path / "cat").rmdir()
        load_dataset(DataConfig(dataset="ncaltech101", root=str(tmp_path)), m, "train")


# -- missing roots ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset, channels", [("cifar10", 3), ("cifar10-dvs", 2),
                                               ("ncaltech101", 2)])
def test_missing_or_empty_root(tmp_path, dataset, channels):
    m = model(in_channels=channels)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data.root {missing} is not a directory; expected"):
        load_dataset(DataConfig(dataset=dataset, root=str(missing)), m, "train")
    with pytest.raises(DataError, match=f"data.root {tmp_path} is empty"):
        load_dataset(DataConfig(dataset=dataset, root=str(tmp_path)), m, "train")
    with pytest.raises(DataError, match="set data.root"):
        load_dataset(DataConfig(dataset=dataset), m, "train")
    (tmp_path / "unrelated.txt").write_text("")
    if dataset == "cifar10":
        with pytest.raises(DataError, match="no complete set of the CIFAR-10 train batches"):
            load_dataset(DataConfig(dataset=dataset, root=str(tmp_path)), m, "train")
    else:
        with pytest.raises(DataError, match=f"{tmp_path} has no class folders"):
            load_dataset(DataConfig(dataset=dataset, root=str(tmp_path)), m, "train")
