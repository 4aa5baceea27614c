"""A reader for torch's zip checkpoint format that never executes code from the file.

A pickle can name any importable callable and have it called, so ``torch.load`` on an untrusted file
can run arbitrary code, and torch 2.3's ``weights_only=True`` refuses the ``argparse.Namespace`` that
every upstream checkpoint contains. :func:`read_torch_file` therefore reads the zip itself: its
unpickler resolves only an explicit allowlist of globals (:data:`ALLOWED_GLOBALS`) and rebuilds
tensors from the zip's storage records; any other global is refused before it is imported.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import io
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import is_int


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file."""


# ------------------------------------------------------------------------------------------------

class _Frozen:
    """Base of the objects a checkpoint pickle can reach: a pickle BUILD cannot modify them.

    ``__slots__`` leaves no ``__dict__`` for BUILD to update and ``__setattr__`` refuses slot state
    (a frozen dataclass would not do: its generated ``__setstate__`` bypasses the freeze).
    """

    __slots__ = ()

    def __init__(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")

    __delattr__ = __setattr__


class _StorageType(_Frozen):
    """Stands in for a pickled ``torch.FloatStorage``-style class: only its dtype is needed."""

    __slots__ = ("dtype",)


class _Storage(_Frozen):
    """A storage rebuilt from a ``data/<key>`` record."""

    __slots__ = ("key", "dtype", "numel", "untyped")


class _Allowed(_Frozen):
    """An allowlisted function, wrapped so that a pickle cannot set its ``__defaults__`` etc."""

    __slots__ = ("fn",)

    def __call__(self, *args):
        return self.fn(*args)


class _FrozenClass(type):
    def __setattr__(cls, name, value):
        raise AttributeError(f"{cls.__name__} is read-only")

    __delattr__ = __setattr__


def _reduce_namespace(ns):
    return argparse.Namespace, (), dict(vars(ns))


# ``argparse.Namespace`` as a checkpoint pickle sees it: instances are ordinary Namespaces (they print
# and re-pickle as such), but the pickle cannot patch attributes onto the class, which would change
# argparse process-wide.
_Namespace = _FrozenClass("Namespace", (argparse.Namespace,),
                          {"__module__": __name__, "__reduce__": _reduce_namespace})


# Legacy typed-storage class names as torch.save writes them (module ``torch``).
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    """Our version of ``torch._utils._rebuild_tensor_v2``: a strided view of a loaded storage.

    Offsets and strides are checked against the storage, so a forged file cannot produce a view
    reaching past the record it came from. ``backward_hooks`` is ignored: torch.save always writes
    an empty dict there, and hooks are functions, which the allowlist refuses anyway.
    """
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor rebuilt from {type(storage).__name__}, not from a storage record")
    if metadata:
        raise ValueError(f"tensor metadata {metadata!r} (conjugate/negative views) is not supported")
    if not (is_int(storage_offset) and storage_offset >= 0):
        raise ValueError(f"bad storage offset {storage_offset!r}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or not all(is_int(v) and v >= 0 for v in size + stride):
        raise ValueError(f"bad tensor size {size!r} / stride {stride!r}")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise ValueError(f"tensor of size {size}, stride {stride}, offset {storage_offset} reaches "
                             f"element {last} of storage {storage.key!r}, which holds {storage.numel}")
    t = torch.empty((0,), dtype=storage.dtype)
    return t.set_(storage.untyped, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"parameter rebuilt from {type(data).__name__}, not from a tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


_NUMPY_KINDS = "biufc"  # bool, signed, unsigned, float, complex: what a logged metric can be


def _numpy_dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for the numeric type-code strings numpy pickles (never object or structured)."""
    if not isinstance(spec, str):
        raise ValueError(f"numpy dtype from {type(spec).__name__}, not from a type-code string")
    dt = np.dtype(spec, bool(align), bool(copy))
    if dt.kind not in _NUMPY_KINDS:
        raise ValueError(f"numpy dtype {spec!r} is not a numeric type")
    return dt


def _numpy_scalar(dtype, data):
    """``numpy.core.multiarray.scalar`` restricted to numeric dtypes and raw bytes.

    The dtype is rebuilt from its type string because a pickle may have BUILT odd state into it.
    """
    clean = np.dtype(dtype.str) if isinstance(dtype, np.dtype) else None
    if clean is None or clean.kind not in _NUMPY_KINDS or not isinstance(data, bytes) \
            or len(data) != clean.itemsize:
        raise ValueError("numpy scalar must be built from a numeric dtype and its raw bytes")
    return np.frombuffer(data, dtype=clean)[0]


def _codecs_encode(text, encoding):
    """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(str, 'latin1')`` (numpy scalars)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise ValueError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return codecs.encode(text, "latin1")


#: Every global a checkpoint pickle may reference, as (module, name) -> what it resolves to.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed(fn=_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Allowed(fn=_rebuild_parameter),
    ("torch", "Size"): torch.Size,
    ("numpy.core.multiarray", "scalar"): _Allowed(fn=_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Allowed(fn=_numpy_scalar),  # numpy >= 2 spelling
    ("numpy", "dtype"): _Allowed(fn=_numpy_dtype),
    ("_codecs", "encode"): _Allowed(fn=_codecs_encode),
    ("argparse", "Namespace"): _Namespace,
    **{("torch", name): _StorageType(dtype=dtype) for name, dtype in _STORAGE_DTYPES.items()},
}

# torch.save's legacy (pre-1.6, non-zip) files start with this magic number, pickled.
_LEGACY_PREFIX = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``<prefix>/data.pkl`` resolving only :data:`ALLOWED_GLOBALS`.

    ``find_class`` is the only way a pickle reaches a Python object by name (GLOBAL, STACK_GLOBAL,
    INST, OBJ and the extension registry all go through it), so refusing there stops code execution.
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(zf.read(f"{prefix}/data.pkl")), encoding="utf-8")
        self._path, self._zf, self._prefix = path, zf, prefix
        self._storages: dict[str, _Storage] = {}
        self._swap = self._byteswap_needed()

    def _byteswap_needed(self) -> bool:
        name = f"{self._prefix}/byteorder"
        if name not in self._zf.namelist():
            return sys.byteorder != "little"  # torch's default for files without a mark
        order = self._zf.read(name)
        if order not in (b"little", b"big"):
            raise CheckpointError(f"{self._path}: unknown byte order {order!r} in {name}")
        return order.decode() != sys.byteorder

    def find_class(self, module, name):
        # Protocol-2 pickles (torch.save's) carry Python 2 names, e.g. __builtin__.eval; translate as
        # pickle's own find_class does, so the allowlist and messages use the real names.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refusing to load {self._path}: it contains a pickled reference to {module}.{name}, "
                "which is not a tensor, container or argparse.Namespace; loading it could execute "
                "code") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid  # location ignored: everything goes to CPU
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not is_int(numel) \
                or numel < 0:
            raise ValueError(f"malformed storage reference {pid!r}")
        if key in self._storages:
            cached = self._storages[key]
            if cached.dtype != storage_type.dtype:
                raise ValueError(f"storage {key!r} is referenced as both {cached.dtype} and "
                                 f"{storage_type.dtype}")
            return cached
        record = f"{self._prefix}/data/{key}"
        try:
            info = self._zf.getinfo(record)
        except KeyError:
            raise CheckpointError(f"{self._path}: the storage record {record} referenced by data.pkl "
                                  "is missing (truncated or corrupted file)") from None
        nbytes = numel * torch.empty((), dtype=storage_type.dtype).element_size()
        if info.file_size != nbytes:
            raise CheckpointError(f"{self._path}: storage record {record} holds {info.file_size} bytes, "
                                  f"data.pkl expects {nbytes} ({numel} x {storage_type.dtype})")
        untyped = (torch.frombuffer(bytearray(self._zf.read(record)), dtype=torch.uint8).untyped_storage()
                   if nbytes else torch.UntypedStorage(0))
        if self._swap:
            untyped.byteswap(storage_type.dtype)
        storage = _Storage(key=key, dtype=storage_type.dtype, numel=numel, untyped=untyped)
        self._storages[key] = storage
        return storage


def read_torch_file(path: str | Path) -> Any:
    """Load a ``torch.save`` file (zip format) allowing only tensors, containers and Namespaces.

    Returns the unpickled object with every tensor on the CPU. Raises :class:`CheckpointError`,
    naming the file, for files that are not torch zip archives (legacy format, random bytes,
    truncated or corrupted zips, TorchScript archives) and for pickles referencing anything outside
    :data:`ALLOWED_GLOBALS`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_PREFIX))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}") from None
    if not zipfile.is_zipfile(path):
        if head == _LEGACY_PREFIX:
            raise CheckpointError(
                f"{path}: written in torch's legacy (pre-1.6, non-zip) format, which this loader does "
                "not read; in a trusted environment re-save it with torch.save(torch.load(f), f2)")
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: truncated or corrupted zip archive")
        raise CheckpointError(f"{path}: not a torch checkpoint (expected a torch.save zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(n.endswith("/constants.pkl") for n in names):
                raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint")
            prefixes = sorted({n[:-len("/data.pkl")] for n in names
                               if n.endswith("/data.pkl") and n.count("/") == 1})
            if len(prefixes) != 1:
                found = "no" if not prefixes else f"{len(prefixes)} ({', '.join(prefixes)})"
                raise CheckpointError(f"{path}: zip archive with {found} <prefix>/data.pkl records; "
                                      "not a torch.save checkpoint")
            try:
                return _RestrictedUnpickler(path, zf, prefixes[0]).load()
            except CheckpointError:
                raise
            except Exception as e:  # a forged or damaged pickle can fail in any number of ways
                raise CheckpointError(f"{path}: corrupted checkpoint: {type(e).__name__}: {e}") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupted zip archive: {e}") from None


