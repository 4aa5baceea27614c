"""A reader for torch's zip checkpoint format that never executes code from the file.

A pickle can name any importable callable and have it called, so ``torch.load`` on an untrusted file
can run arbitrary code, and torch 2.3's ``weights_only=True`` refuses the ``argparse.Namespace`` that
every upstream checkpoint contains. :func:`read_torch_file` therefore reads the zip itself: its
unpickler resolves only an explicit allowlist of globals (:data:`ALLOWED_GLOBALS`) and rebuilds
tensors from the zip's storage records; any other global is refused before it is imported. It is the
pure-Python unpickler with the opcodes that act on an existing object restricted to the objects
torch.save uses them on: in the C unpickler a pickle BUILD reaches ``Tensor.__setstate__``, whose
``set_`` resizes a storage past its record (uninitialised heap memory in a weight, or a reservation of
any size from a few hundred bytes).

Nothing is read before its size is checked against the limits below (README, "Resource limits"): the
sizes the zip declares, before decompressing, and a tensor's extent, before building it.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import io
import math
import os
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


# Limits (README, "Resource limits"). torch.save stores its records uncompressed, so a file holds about
# its own size (trained weights recompressed with deflate stay near 1:1); an upstream checkpoint's
# data.pkl is a few hundred KB.
MAX_PICKLE_BYTES = 16 * 1024 ** 2  # data.pkl
MAX_TENSOR_BYTES = 2 * 1024 ** 3   # one storage record, and the extent of one tensor
MAX_TOTAL_BYTES = 8 * 1024 ** 3    # every entry of the zip, uncompressed, together
MAX_RATIO = 100                    # every entry uncompressed : the file's size
RATIO_MIN_BYTES = 1024 ** 2        # below this the ratio is not checked
MAX_NESTING = 100                  # containers within containers in the unpickled object
_CHUNK = 1024 ** 2                 # bytes decompressed at a time into a record's buffer


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


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line, cut at ``limit`` characters: how a message quotes what a file holds."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line(error: Exception) -> str:
    """An exception's message on one line, cut at 300 characters (torch's can span lines)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


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
        raise ValueError(f"tensor metadata {_short(metadata)} (conjugate/negative views) is not supported")
    if not (is_int(storage_offset) and storage_offset >= 0):
        raise ValueError(f"bad storage offset {_short(storage_offset)}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or not all(is_int(v) and 0 <= v < 2 ** 63 for v in size + stride):
        raise ValueError(f"bad tensor size {_short(size)} / stride {_short(stride)}")
    nbytes = math.prod(size) * _element_size(storage.dtype)
    if nbytes > MAX_TENSOR_BYTES:
        raise ValueError(f"tensor of size {size} holds {nbytes} bytes, more than the limit of {MAX_TENSOR_BYTES}")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise ValueError(f"tensor of size {size}, stride {stride}, offset {storage_offset} reaches "
                             f"element {last} of storage {_short(storage.key)}, which holds {storage.numel}")
    t = torch.empty((0,), dtype=storage.dtype)
    return t.set_(storage.untyped, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"parameter rebuilt from {type(data).__name__}, not from a tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


_NUMPY_KINDS = "biufc"  # bool, signed, unsigned, float, complex: what a logged metric can be


def _numpy_dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for the numeric type-code strings numpy pickles (never object or structured).

    Always a copy, whatever the pickle asks: the BUILD that numpy pickles after it sets the byte order
    in place, which must never reach numpy's shared dtype instances.
    """
    if not isinstance(spec, str):
        raise ValueError(f"numpy dtype from {type(spec).__name__}, not from a type-code string")
    dt = np.dtype(spec, bool(align), True)
    if dt.kind not in _NUMPY_KINDS:
        raise ValueError(f"numpy dtype {_short(spec)} is not a numeric type")
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


def _is_dtype_state(state) -> bool:
    """The state numpy pickles for a numeric dtype: only the byte order varies."""
    return (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
            and state[2:] == (None, None, None, -1, -1, 0))


def _restricted(opcode: str, allowed: tuple[type, ...], target):
    """The pure-Python unpickler's ``opcode``, acting only on objects of exactly the ``allowed`` types;
    ``target(unpickler)`` finds the object it acts on (under the mark for the opcodes that take one)."""
    load = pickle._Unpickler.dispatch[getattr(pickle, opcode)[0]]

    def restricted(self):
        obj = target(self)
        if type(obj) not in allowed:
            raise self.refusal(opcode, obj)
        load(self)
    return restricted


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickles ``<prefix>/data.pkl`` resolving only :data:`ALLOWED_GLOBALS`.

    ``find_class`` is the only way a pickle reaches a Python object by name (GLOBAL, STACK_GLOBAL,
    INST, OBJ and the extension registry all go through it), so refusing there stops code execution.
    The opcodes that act on an object already built act only where torch.save writes them: BUILD on a
    numpy dtype (its byte order) and on an OrderedDict or Namespace (attributes), SETITEM(S) on dicts,
    APPEND(S) on lists, ADDITEMS on sets. So no method of a rebuilt tensor is ever called.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, path: Path, archive: "_Archive", prefix: str):
        super().__init__(io.BytesIO(archive.read(f"{prefix}/data.pkl", MAX_PICKLE_BYTES)), encoding="utf-8")
        self._path, self._archive, self._prefix = path, archive, prefix
        self._storages: dict[str, _Storage] = {}
        self._swap = self._byteswap_needed()

    def _byteswap_needed(self) -> bool:
        name = f"{self._prefix}/byteorder"
        if not self._archive.has(name):
            return sys.byteorder != "little"  # torch's default for files without a mark
        order = bytes(self._archive.read(name, len(b"little")))
        if order not in (b"little", b"big"):
            raise CheckpointError(f"{self._path}: unknown byte order {order!r} in {_short(name)}")
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
                f"refusing to load {self._path}: it contains a pickled reference to {module}.{name}"[:300] + ", "
                "which is not a tensor, container or argparse.Namespace; loading it could execute "
                "code") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"unknown persistent id {_short(pid)}")
        _, storage_type, key, _location, numel = pid  # location ignored: everything goes to CPU
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not is_int(numel) \
                or numel < 0:
            raise ValueError(f"malformed storage reference {_short(pid)}")
        if key in self._storages:
            cached = self._storages[key]
            if cached.dtype != storage_type.dtype:
                raise ValueError(f"storage {_short(key)} is referenced as both {cached.dtype} and "
                                 f"{storage_type.dtype}")
            return cached
        record = f"{self._prefix}/data/{key}"
        if not self._archive.has(record):
            raise CheckpointError(f"{self._path}: the storage record {_short(record)} referenced by data.pkl "
                                  "is missing (truncated or corrupted file)")
        nbytes = numel * _element_size(storage_type.dtype)
        if self._archive.size(record) != nbytes:
            raise CheckpointError(f"{self._path}: storage record {_short(record)} holds {self._archive.size(record)} "
                                  f"bytes, data.pkl expects {nbytes} ({numel} x {storage_type.dtype})")
        data = self._archive.read(record, MAX_TENSOR_BYTES)
        untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if nbytes else torch.UntypedStorage(0)
        if self._swap:
            untyped.byteswap(storage_type.dtype)
        storage = _Storage(key=key, dtype=storage_type.dtype, numel=numel, untyped=untyped)
        self._storages[key] = storage
        return storage

    def refusal(self, opcode: str, obj) -> CheckpointError:
        return CheckpointError(f"refusing to load {self._path}: its pickle applies {opcode} to a "
                               f"{type(obj).__name__}, which torch.save never does")

    def _load_build(self):
        state = self.stack.pop()
        obj = self.stack[-1]
        if isinstance(obj, np.dtype) and _is_dtype_state(state):
            obj.__setstate__(state)
        elif type(obj) in (collections.OrderedDict, _Namespace) and isinstance(state, dict) \
                and all(type(k) is str for k in state):
            obj.__dict__.update(state)  # torch's state_dict()._metadata; a Namespace's attributes
        else:
            raise self.refusal("BUILD (__setstate__)", obj)

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _restricted("SETITEM", (dict, collections.OrderedDict), lambda u: u.stack[-3])
    dispatch[pickle.SETITEMS[0]] = _restricted("SETITEMS", (dict, collections.OrderedDict),
                                               lambda u: u.metastack[-1][-1])
    dispatch[pickle.APPEND[0]] = _restricted("APPEND", (list,), lambda u: u.stack[-2])
    dispatch[pickle.APPENDS[0]] = _restricted("APPENDS", (list,), lambda u: u.metastack[-1][-1])
    dispatch[pickle.ADDITEMS[0]] = _restricted("ADDITEMS", (set,), lambda u: u.metastack[-1][-1])


class _Archive:
    """A zip archive whose entries are read only within the limits, each into one buffer."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, file_size: int):
        self._path, self._zf = path, zf
        self._infos = {info.filename: info for info in zf.infolist()}
        total = 0
        for info in zf.infolist():
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise CheckpointError(f"{path}: entry {_short(info.filename)} is encrypted or compressed with method "
                                      f"{info.compress_type}; torch.save writes neither")
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise CheckpointError(f"{path}: its entries hold {total} bytes uncompressed, more than the limit "
                                  f"of {MAX_TOTAL_BYTES}")
        if total > RATIO_MIN_BYTES and total > MAX_RATIO * file_size:
            raise CheckpointError(f"{path}: its entries hold {total} bytes uncompressed in a file of "
                                  f"{file_size} bytes, above the limit of {MAX_RATIO}:1 (a zip bomb?)")

    def names(self) -> list[str]:
        return list(self._infos)

    def has(self, name: str) -> bool:
        return name in self._infos

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def read(self, name: str, limit: int) -> bytearray:
        """The entry's bytes, decompressed a chunk at a time into one buffer of its declared size."""
        info = self._infos[name]
        if info.file_size > limit:
            raise CheckpointError(f"{self._path}: entry {_short(name)} holds {info.file_size} bytes uncompressed, "
                                  f"more than the limit of {limit}")
        data = bytearray(info.file_size)
        done = 0
        with self._zf.open(info) as f:  # stops at the declared size and checks the CRC at the end
            while done < len(data) and (chunk := f.read(min(_CHUNK, len(data) - done))):
                data[done:done + len(chunk)] = chunk
                done += len(chunk)
        if done != len(data):
            raise CheckpointError(f"{self._path}: entry {_short(name)} holds {done} bytes, its header says {len(data)}")
        return data


def _children(obj) -> list:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, argparse.Namespace):
        return list(vars(obj).values())
    return []


def _nesting(obj) -> int:
    """How many containers deep ``obj`` nests, counted without recursion (a shared container counts
    once, a cycle back into a container as flat)."""
    depth: dict[int, int] = {}
    stack = [(obj, False)]
    while stack:
        item, finished = stack.pop()
        if finished:
            depth[id(item)] = 1 + max((depth[id(c)] for c in _children(item) if id(c) in depth), default=0)
        elif id(item) not in depth and _children(item):
            depth[id(item)] = 0  # in progress: a cycle back to it adds nothing
            stack.append((item, True))
            stack.extend((c, False) for c in _children(item) if id(c) not in depth)
    return depth.get(id(obj), 0)


def read_torch_file(path: str | Path) -> Any:
    """Load a ``torch.save`` file (zip format) allowing only tensors, containers and Namespaces.

    Returns the unpickled object with every tensor on the CPU. Raises :class:`CheckpointError`,
    naming the file, for files that are not torch zip archives (legacy format, random bytes,
    truncated or corrupted zips, TorchScript archives), for pickles referencing anything outside
    :data:`ALLOWED_GLOBALS` or acting on objects as torch.save never does, and for anything over the
    limits (``MAX_*`` above).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_PREFIX))
            file_size = os.fstat(f.fileno()).st_size
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
            archive = _Archive(path, zf, file_size)
            names = archive.names()
            if any(n.endswith("/constants.pkl") for n in names):
                raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint")
            prefixes = sorted({n[:-len("/data.pkl")] for n in names
                               if n.endswith("/data.pkl") and n.count("/") == 1})
            if len(prefixes) != 1:
                found = "no" if not prefixes else f"{len(prefixes)} ({_short(prefixes)})"
                raise CheckpointError(f"{path}: zip archive with {found} <prefix>/data.pkl records; "
                                      "not a torch.save checkpoint")
            try:
                obj = _RestrictedUnpickler(path, archive, prefixes[0]).load()
            except CheckpointError:
                raise
            except Exception as e:  # a forged or damaged pickle can fail in any number of ways
                raise CheckpointError(f"{path}: corrupted checkpoint: {type(e).__name__}: {_one_line(e)}") from e
    except CheckpointError:
        raise
    except Exception as e:  # a malformed central directory raises assorted errors (BadZipFile, EOFError,
        # UnicodeDecodeError for a name flagged UTF-8, ...): all mean the same here
        raise CheckpointError(f"{path}: truncated or corrupted zip archive: {type(e).__name__}: "
                              f"{_one_line(e)}") from None
    if _nesting(obj) > MAX_NESTING:
        raise CheckpointError(f"{path}: its pickle nests containers more than {MAX_NESTING} deep")
    return obj
