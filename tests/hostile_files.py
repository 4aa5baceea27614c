"""Test support: hand-made torch checkpoints (pickle opcodes and zip records) for the hostile-input tests."""
from __future__ import annotations

import pickle
import zipfile

import numpy as np
import torch


def hand_pickle(*ops: bytes) -> bytes:
    """A protocol-2 pickle of the given opcodes."""
    return pickle.PROTO + b"\x02" + b"".join(ops) + pickle.STOP


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    data = s.encode()
    return pickle.BINUNICODE + len(data).to_bytes(4, "little") + data


def integer(n: int) -> bytes:
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(data)]) + data


def ints(values) -> bytes:
    """A tuple of integers."""
    return pickle.MARK + b"".join(integer(v) for v in values) + pickle.TUPLE


def tensor(key: str, numel: int, size, stride, storage: str = "FloatStorage", offset: int = 0) -> bytes:
    """``torch._utils._rebuild_tensor_v2`` of storage record ``key`` (``numel`` elements), as torch.save
    writes it."""
    pid = pickle.MARK + text("storage") + glob("torch", storage) + text(key) + text("cpu") + integer(numel) \
        + pickle.TUPLE + pickle.BINPERSID
    hooks = glob("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    return (glob("torch._utils", "_rebuild_tensor_v2") + pickle.MARK + pid + integer(offset) + ints(size)
            + ints(stride) + pickle.NEWFALSE + hooks + pickle.TUPLE + pickle.REDUCE)


def write_torch_zip(path, data_pkl: bytes, records: dict[str, bytes] | None = None, *,
                    prefix: str = "archive", compression: int = zipfile.ZIP_STORED):
    """A torch zip archive: ``<prefix>/data.pkl`` and the storage records ``<prefix>/data/<key>``."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        for key, data in (records or {}).items():
            zf.writestr(f"{prefix}/data/{key}", data)
    return path


def storage_bytes(obj) -> list[bytes]:
    """The bytes of every tensor storage reachable in ``obj`` (dicts, lists, tuples, Namespaces)."""
    found, stack, seen = [], [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            as_bytes = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),), (1,))
            found.append(as_bytes.numpy().tobytes())
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(item)
        elif hasattr(item, "__dict__") and type(item).__name__ == "Namespace":
            stack += list(vars(item).values())
    return found


def record_bytes(path) -> set[bytes]:
    """The bytes of every storage record in a torch zip archive, as stored and byte-swapped for each
    element size (a file marked big-endian is swapped on loading)."""
    stored = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if "/data/" in info.filename and info.file_size < 2 ** 26:
                try:
                    stored.append(zf.read(info))
                except Exception:  # noqa: BLE001 - a damaged record no tensor was loaded from
                    pass
    swapped = [np.frombuffer(b, f"u{size}").byteswap().tobytes() for b in stored for size in (2, 4, 8)
               if len(b) % size == 0]
    return {*stored, *swapped}
