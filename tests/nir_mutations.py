"""Seeded mutations of NIR files for tests/test_hostile_nir.py: broken bytes, truncation, and HDF5-level edits
(shapes, dtypes, values, deleted and duplicated groups, links, external storage, virtual datasets, huge shapes,
decompression bombs, deep nesting). Every mutation is a function ``(rng, file, bait) -> description`` editing
``file`` in place; ``bait`` holds the local files a hostile NIR file may point at (``Bait``)."""
from __future__ import annotations

import functools
import random
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

SECRET = b"SECRET-LOCAL-FILE-CONTENT-"  # the bait files' content: it must never reach a loaded graph


@dataclass(frozen=True)
class Bait:
    """Local files a mutated NIR file points at: raw bytes, and an HDF5 file with the datasets ``/secret`` (1-D)
    and ``/weight`` (3 x 4 float32), both of those bytes."""

    folder: Path

    @property
    def raw(self) -> Path:
        return self.folder / "secret.bin"

    @property
    def hdf5(self) -> Path:
        return self.folder / "secret.h5"

    def write(self) -> "Bait":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.raw.write_bytes(SECRET * 4096)
        with h5py.File(self.hdf5, "w") as f:
            f.create_dataset("secret", data=np.frombuffer(SECRET * 64, dtype=np.uint8).astype(np.float32))
            f.create_dataset("weight", data=np.frombuffer((SECRET * 2)[:48], dtype=np.float32).reshape(3, 4))
        return self


def secret_in(array: np.ndarray) -> bool:
    """Whether an array holds bait bytes, raw or as the float32 values of ``secret.h5``."""
    raw = np.ascontiguousarray(array).tobytes()
    as_floats = np.frombuffer(SECRET[:8], dtype=np.uint8).astype(np.float32).tobytes()
    return SECRET[:8] in raw or as_floats in raw


# -- where to mutate -------------------------------------------------------------------------------------
def _members(f: h5py.File) -> tuple[list[str], list[str]]:
    """(datasets, groups) of the file, by path; links are not followed."""
    datasets, groups = [], []

    def visit(name, obj):
        (datasets if isinstance(obj, h5py.Dataset) else groups).append(name)

    f.visititems(visit)
    return datasets, groups


def _numeric(f: h5py.File) -> list[str]:
    return [d for d in _members(f)[0] if f[d].dtype.kind in "biuf"]


def _pick(rng: random.Random, items: list[str], fallback: str = "node") -> str:
    return rng.choice(items) if items else fallback


def _replace(f: h5py.File, path: str, **dataset) -> None:
    del f[path]
    f.create_dataset(path, **dataset)


# -- byte-level mutations -----------------------------------------------------------------------------------
def flip_bytes(rng, file: Path, bait: Bait) -> str:
    data = bytearray(file.read_bytes())
    spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 16))]
    for i in spots:
        data[i] = rng.randrange(256)
    file.write_bytes(bytes(data))
    return f"flip bytes at {spots}"


def truncate(rng, file: Path, bait: Bait) -> str:
    data = file.read_bytes()
    cut = rng.randrange(len(data))
    file.write_bytes(data[:cut])
    return f"truncate to {cut} bytes"


def zero_span(rng, file: Path, bait: Bait) -> str:
    data = bytearray(file.read_bytes())
    start, length = rng.randrange(len(data)), rng.randint(16, 512)
    data[start:start + length] = bytes(len(data[start:start + length]))
    file.write_bytes(bytes(data))
    return f"zero bytes {start}..{start + length}"


def splice(rng, file: Path, bait: Bait) -> str:
    data = bytearray(file.read_bytes())
    size, length = len(data), rng.randint(8, 256)
    src, dst = rng.randrange(size), rng.randrange(size)
    data[dst:dst + length] = data[src:src + length]
    file.write_bytes(bytes(data[:size]))
    return f"copy bytes {src}+{length} to {dst}"


# -- HDF5-level mutations -------------------------------------------------------------------------------------
def reshape(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    shape = rng.choice([(), (0,), (1,), (0, 3), (3, 0, 2), (1, 1, 1, 1, 1)]
                       + [tuple(rng.randint(1, 9) for _ in range(rng.randint(1, 5))) for _ in range(4)])
    _replace(f, path, data=np.random.default_rng(rng.randrange(2**32)).standard_normal(shape).astype(np.float32))
    return f"{path} reshaped to {shape}"


def retype(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _members(f)[0])
    shape = f[path].shape or ()
    kind = rng.choice(["int8", "int64", "uint8", "bool", "float16", "float64", "complex64", "bytes", "str",
                       "compound", "reference", "vlen", "enum"])
    n = int(np.prod(shape)) if shape else 1
    if kind in ("int8", "int64", "uint8", "bool", "float16", "float64", "complex64"):
        data = np.arange(n).reshape(shape).astype(kind)
        _replace(f, path, data=data)
    elif kind == "bytes":
        _replace(f, path, data=np.array([b"abc"] * n).reshape(shape))
    elif kind == "str":
        _replace(f, path, data="LIF" if not shape else np.array(["x"] * n, dtype=object).reshape(shape),
                 dtype=h5py.string_dtype())
    elif kind == "compound":
        _replace(f, path, data=np.zeros(shape, dtype=[("a", "f4"), ("b", "i2")]))
    elif kind == "reference":
        _replace(f, path, shape=shape, dtype=h5py.ref_dtype)
    elif kind == "vlen":
        _replace(f, path, shape=shape, dtype=h5py.vlen_dtype(np.int32))
    else:
        _replace(f, path, data=np.zeros(shape, dtype="i1"), dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
    return f"{path} retyped to {kind}"


def bad_values(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    value = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30, 1e300, -1e300, 2**62, -(2**31), 1e-45])
    old = f[path][()]
    data = np.full(np.shape(old), value, dtype=np.float64 if isinstance(value, float) else np.int64)
    if data.size and rng.random() < 0.5:
        data = np.asarray(old, dtype=np.float64).copy()
        data.reshape(-1)[rng.randrange(data.size)] = value
    _replace(f, path, data=data)
    return f"{path} set to {value}"


def huge_shape(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    shape = rng.choice([(2**40,), (2**20, 2**20), (10**8,), (2**31 - 1, 2), (65536, 65536, 16)])
    _replace(f, path, shape=shape, dtype="f4", chunks=(1,) * (len(shape) - 1) + (1024,), maxshape=(None,) * len(shape))
    return f"{path} declared {shape}"


def delete(rng, f: h5py.File, bait: Bait) -> str:
    datasets, groups = _members(f)
    path = _pick(rng, datasets + groups + ["node", "version"])
    del f[path]
    return f"{path} deleted"


def duplicate(rng, f: h5py.File, bait: Bait) -> str:
    groups = [g for g in _members(f)[1] if g.count("/") >= 2] or ["node"]
    path = _pick(rng, groups)
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    copy = f"{parent}/{name}_copy" if parent else f"{name}_copy"
    if rng.random() < 0.5:
        f.copy(path, copy)
        return f"{path} copied to {copy}"
    f[copy] = f[path]  # a hard link: the same group twice
    return f"{path} hard-linked as {copy}"


def link_cycle(rng, f: h5py.File, bait: Bait) -> str:
    groups = _members(f)[1] or ["node"]
    path = _pick(rng, groups)
    ancestor = path.rsplit("/", 1)[0] if "/" in path else "/"
    if rng.random() < 0.5:
        f[path + "/loop"] = f[ancestor]
        return f"hard link {path}/loop -> {ancestor}"
    f[path + "/loop"] = h5py.SoftLink("/" + ancestor.lstrip("/"))
    return f"soft link {path}/loop -> {ancestor}"


def soft_link(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _members(f)[0])
    target = rng.choice(["/" + path, "/nowhere", "/" + _pick(rng, _members(f)[0])])
    del f[path]
    f[path] = h5py.SoftLink(target)
    return f"{path} soft link -> {target}"


def external_link(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    del f[path]
    f[path] = h5py.ExternalLink(str(bait.hdf5), "/secret")
    return f"{path} external link -> {bait.hdf5}"


def external_storage(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    shape = f[path].shape or (1,)
    nbytes = int(np.prod(shape)) * 4
    _replace(f, path, shape=shape, dtype="f4", external=[(str(bait.raw), 0, nbytes)])
    return f"{path} stored in {bait.raw}"


def virtual(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    layout = h5py.VirtualLayout(shape=(64,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(bait.hdf5), "secret", shape=(64 * len(SECRET),))[:64]
    del f[path]
    f.create_virtual_dataset(path, layout)
    return f"{path} virtual -> {bait.hdf5}"


def node_type(rng, f: h5py.File, bait: Bait) -> str:
    types = [d for d in _members(f)[0] if d.endswith("/type")] or ["node/type"]
    path = _pick(rng, types)
    new = rng.choice(["LIF", "IF", "LI", "I", "CubaLIF", "CubaLI", "Affine", "Linear", "Conv1d", "Conv2d", "Flatten",
                      "SumPool2d", "AvgPool2d", "Scale", "Delay", "Threshold", "Input", "Output", "NIRGraph", "",
                      "Nonsense", "ééé"])
    if path in f:
        del f[path]
    f.create_dataset(path, data=new, dtype=h5py.string_dtype())
    return f"{path} = {new!r}"


def edges(rng, f: h5py.File, bait: Bait) -> str:
    paths = [d for d in _members(f)[0] if d.endswith("edges")] or ["node/edges"]
    path = _pick(rng, paths)
    old = [tuple(e) for e in f[path][()]] if path in f and f[path].ndim == 2 else []
    how = rng.choice(["unknown", "self", "reverse", "repeat", "none", "three", "numeric", "flat"])
    new = list(old)
    if how == "unknown":
        new.append((old[0][0] if old else b"input", b"nosuch"))
    elif how == "self" and old:
        new.append((old[0][1], old[0][1]))
    elif how == "reverse" and old:
        new.append((old[-1][1], old[-1][0]))
    elif how == "repeat" and old:
        new.append(old[0])
    elif how == "none":
        new = []
    if path in f:
        del f[path]
    if how == "three":
        f.create_dataset(path, data=np.array([[b"a", b"b", b"c"]], dtype=object), dtype=h5py.string_dtype())
    elif how == "numeric":
        f.create_dataset(path, data=np.arange(6).reshape(3, 2))
    elif how == "flat":
        f.create_dataset(path, data=np.array([b"input", b"output"], dtype=object), dtype=h5py.string_dtype())
    else:
        f.create_dataset(path, data=np.array(new, dtype=object).reshape(-1, 2), dtype=h5py.string_dtype())
    return f"{path}: {how}"


def deep_nesting(rng, f: h5py.File, bait: Bait) -> str:
    depth = rng.choice([100, 400])
    path = _pick(rng, _members(f)[1])
    group = f[path]
    for i in range(depth):
        group = group.create_group(f"g{i}")
    return f"{depth} nested groups under {path}"


@functools.cache
def _bomb() -> bytes:
    return zlib.compress(bytes(64 * 2**20), 9)


def gzip_bomb(rng, f: h5py.File, bait: Bait) -> str:
    path = _pick(rng, _numeric(f))
    del f[path]
    ds = f.create_dataset(path, shape=(16,), maxshape=(None,), chunks=(16,), dtype="f4", compression="gzip")
    ds.id.write_direct_chunk((0,), _bomb(), filter_mask=0)
    return f"{path}: a 64-byte chunk inflating to 64 MiB"


def metadata(rng, f: h5py.File, bait: Bait) -> str:
    groups = [g for g in _members(f)[1] if g.count("/") == 2] + ["node"]
    path = _pick(rng, groups) + "/metadata"
    if path in f:
        del f[path]
    meta = f.create_group(path)
    value = rng.choice([np.nan, 0.0, -1.0, "fast", np.arange(3)])
    key = rng.choice(["snncompile.dt", "snncompile.leak_encoding", "snncompile.threshold_cmp", "other"])
    if isinstance(value, str):
        meta.create_dataset(key, data=value, dtype=h5py.string_dtype())
    else:
        meta.create_dataset(key, data=value)
    if rng.random() < 0.3:
        meta.create_group("nested").create_dataset("x", data=1)
    return f"{path}/{key} = {value!r}"


def swap(rng, f: h5py.File, bait: Bait) -> str:
    numeric = _numeric(f)
    a, b = _pick(rng, numeric), _pick(rng, numeric)
    da, db = f[a][()], f[b][()]
    _replace(f, a, data=db)
    _replace(f, b, data=da)
    return f"swap {a} <-> {b}"


BYTE_MUTATIONS = [flip_bytes, truncate, zero_span, splice]
HDF5_MUTATIONS = [reshape, retype, bad_values, huge_shape, delete, duplicate, link_cycle, soft_link, external_link,
                  external_storage, virtual, node_type, edges, deep_nesting, gzip_bomb, metadata, swap]
MUTATIONS = BYTE_MUTATIONS + HDF5_MUTATIONS


def mutate(seed_file: Path, out: Path, mutation, rng: random.Random, bait: Bait) -> str:
    """Write ``out``: ``seed_file`` with one mutation applied; returns what was done."""
    shutil.copyfile(seed_file, out)
    if mutation in BYTE_MUTATIONS:
        return mutation(rng, out, bait)
    with h5py.File(out, "r+") as f:
        return mutation(rng, f, bait)
