"""``.snnir`` reading: the hardened zip checks, graph.json parsing, the array manifest and array entries."""
from __future__ import annotations

import contextlib
import io
import json
import math
import zipfile
from typing import Any

import numpy as np

from ...config import is_int
from .. import io as ir_io  # the package: its constants are read at call time, so they can be patched
from .values import _array_sha256, _c_order, _check_array_dtype, _keys, _Problem, _short

_MANIFEST_KEYS = ("dtype", "shape", "sha256")
_MAX_NDIM = 32           # numpy's
_MAX_NPY_HEADER = 65536  # magic, version, length and the header dict: numpy writes 128 bytes or so
_CHUNK = 1024 ** 2       # bytes decompressed at a time into an entry's buffer


def _check_entry_name(name: Any, what: str = "entry") -> str:
    if not isinstance(name, str) or not name:
        raise _Problem(f"{what} name must be a non-empty string, got {_short(name)}")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\x00" in name or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)):
        raise _Problem(f"unsafe {what} name {name!r} (absolute, '..', '.', empty component, backslash "
                       f"or drive)")
    return name


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Problem(f"graph.json: duplicated key {k!r} in one JSON object")
        out[k] = v
    return out


def _reject_constant(text: str):
    raise _Problem(f"graph.json: non-standard JSON constant {text} (non-finite floats are written "
                   f"as {{'float': ...}})")


_TOO_DEEP = "graph.json is nested too deeply (arrays and objects more than {} deep)"


def _nesting(doc: Any) -> int:
    """How many arrays and objects deep a parsed JSON document nests, counted level by level (no recursion)."""
    depth, level = 0, [doc]
    while level := [item for item in level if isinstance(item, (list, dict))]:
        depth += 1
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def _parse_json(data: bytes) -> Any:
    """The document, refused when it nests deeper than ``MAX_JSON_DEPTH`` (the loader and the upgrade
    steps walk values recursively)."""
    try:
        text = data.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except _Problem:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise _Problem(f"graph.json is not valid JSON: {e}") from None
    except RecursionError:
        raise _Problem(_TOO_DEEP.format(ir_io.MAX_JSON_DEPTH)) from None
    if _nesting(doc) > ir_io.MAX_JSON_DEPTH:
        raise _Problem(_TOO_DEEP.format(ir_io.MAX_JSON_DEPTH))
    return doc


class _Reader:
    """Reads one archive: all entry checks, the manifest, and the array entries."""

    def __init__(self, zf: zipfile.ZipFile, archive_bytes: int):
        self.zf = zf
        self.archive_bytes = archive_bytes
        self.infos: dict[str, zipfile.ZipInfo] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.referenced: set[str] = set()

    def check_entries(self) -> None:
        infos = self.zf.infolist()
        if len(infos) > ir_io.MAX_ENTRIES:
            raise _Problem(f"{len(infos)} entries, more than the limit of {ir_io.MAX_ENTRIES}")
        total = 0
        for info in infos:
            name = _check_entry_name(info.filename)
            if name in self.infos:
                raise _Problem(f"entry {name!r} appears more than once")
            if info.flag_bits & 0x1:
                raise _Problem(f"entry {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _Problem(f"entry {name!r} uses compression method {info.compress_type}; only stored "
                               f"(0) and deflate (8) are allowed")
            if info.file_size > ir_io.MAX_ENTRY_BYTES:
                raise _Problem(f"entry {name!r} declares {info.file_size} uncompressed bytes, more than the "
                               f"limit of {ir_io.MAX_ENTRY_BYTES}")
            if info.file_size > ir_io.RATIO_MIN_BYTES and info.file_size > ir_io.MAX_RATIO * max(info.compress_size, 1):
                raise _Problem(f"entry {name!r} declares a compression ratio of "
                               f"{info.file_size / max(info.compress_size, 1):.0f}:1 ({info.file_size} from "
                               f"{info.compress_size} bytes), above the limit of {ir_io.MAX_RATIO}:1 (a zip bomb?)")
            total += info.file_size
            self.infos[name] = info
        if total > ir_io.MAX_TOTAL_BYTES:
            raise _Problem(f"entries declare {total} uncompressed bytes in all, more than the limit of "
                           f"{ir_io.MAX_TOTAL_BYTES}")
        # entries whose data overlap (one deflate stream read under many names) pass the check per entry
        if total > ir_io.RATIO_MIN_BYTES and total > ir_io.MAX_RATIO * self.archive_bytes:
            raise _Problem(f"entries declare {total} uncompressed bytes in all from a file of {self.archive_bytes} "
                           f"bytes, above the limit of {ir_io.MAX_RATIO}:1 (a zip bomb?)")

    def read(self, name: str, limit: int) -> bytearray:
        """The entry, decompressed a chunk at a time into one buffer of its declared size."""
        info = self.infos[name]
        if info.file_size > limit:
            raise _Problem(f"entry {name!r} declares {info.file_size} bytes, more than the limit of {limit}")
        with self._open(name) as f:
            return self._fill(f, name, bytearray(info.file_size), 0)

    @contextlib.contextmanager
    def _open(self, name: str):
        try:
            with self.zf.open(self.infos[name]) as f:  # stops at the declared size, checks the CRC at its end
                yield f
        except _Problem:
            raise
        except Exception as e:  # zipfile raises many kinds on corrupt data: all mean the same here
            raise _Problem(f"entry {name!r} is corrupt or truncated: {type(e).__name__}: {e}") from None

    def _fill(self, f, name: str, data: bytearray, done: int) -> bytearray:
        """``data`` from byte ``done`` on filled from the entry's stream ``f``, which must end there."""
        while done < len(data) and (chunk := f.read(min(_CHUNK, len(data) - done))):
            data[done:done + len(chunk)] = chunk
            done += len(chunk)
        if done != len(data) or f.read(1):
            raise _Problem(f"entry {name!r} has {done} bytes, its header says {self.infos[name].file_size}")
        return data

    def load_manifest(self, manifest: Any) -> None:
        if not isinstance(manifest, dict):
            raise _Problem(f"'arrays' must be a JSON object, got {_short(manifest)}")
        for name, meta in manifest.items():
            _check_entry_name(name, "array entry")
            what = f"array entry {name!r}"
            if name == ir_io.GRAPH_ENTRY:
                raise _Problem(f"{what}: graph.json cannot be an array")
            _keys(meta, _MANIFEST_KEYS, f"manifest of {what}")
            dtype_text, shape, digest = meta["dtype"], meta["shape"], meta["sha256"]
            if not isinstance(dtype_text, str):
                raise _Problem(f"{what}: dtype must be a string, got {_short(dtype_text)}")
            try:
                dtype = np.dtype(dtype_text)
            except Exception:
                raise _Problem(f"{what}: unknown dtype {dtype_text!r}") from None
            _check_array_dtype(dtype, what)
            if dtype.str != dtype_text:
                raise _Problem(f"{what}: dtype {dtype_text!r} is not in numpy's canonical form {dtype.str!r}")
            if not isinstance(shape, list) or not all(is_int(s) and s >= 0 for s in shape):
                raise _Problem(f"{what}: shape must be a list of non-negative integers, got {_short(shape)}")
            if len(shape) > _MAX_NDIM:
                raise _Problem(f"{what}: {len(shape)} dimensions, more than numpy's {_MAX_NDIM}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > ir_io.MAX_ENTRY_BYTES:
                raise _Problem(f"{what}: shape {_short(shape)} of {dtype.str!r} holds {nbytes} bytes, more than the "
                               f"limit of {ir_io.MAX_ENTRY_BYTES}")
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise _Problem(f"{what}: sha256 must be 64 lowercase hex digits, got {_short(digest)}")
            if name not in self.infos:
                raise _Problem(f"{what} is listed in the manifest but missing from the archive")
            self.arrays[name] = self._load_array(name, dtype, tuple(shape), digest)
        extra = sorted(set(self.infos) - set(self.arrays) - {ir_io.GRAPH_ENTRY})
        if extra:
            raise _Problem(f"unexpected entry {extra[0]!r}: not graph.json and not in the array manifest")

    def _load_array(self, name: str, dtype: np.dtype, shape: tuple[int, ...], digest: str) -> np.ndarray:
        """The array of entry ``name``, whose manifest ``dtype`` and ``shape`` are within the limits. The
        header is read first and the entry's size checked against it; the data is then decompressed into
        one buffer, which the array is a view of."""
        what = f"array entry {name!r}"
        size = self.infos[name].file_size
        with self._open(name) as f:
            head = f.read(min(size, _MAX_NPY_HEADER))
            fp = io.BytesIO(head)
            try:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    h_shape, fortran, h_dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    h_shape, fortran, h_dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise _Problem(f"{what}: .npy format version {version} is not supported (1.0, 2.0)")
            except _Problem:
                raise
            except Exception as e:
                raise _Problem(f"{what}: not a valid .npy header: {e}") from None
            _check_array_dtype(h_dtype, what)
            if h_dtype.str != dtype.str:
                raise _Problem(f"{what}: .npy dtype {h_dtype.str!r} differs from the manifest's {dtype.str!r}")
            if tuple(h_shape) != shape:
                raise _Problem(f"{what}: .npy shape {tuple(h_shape)} differs from the manifest's {shape}")
            count = math.prod(shape)
            expected = fp.tell() + count * dtype.itemsize
            if size != expected:
                raise _Problem(f"{what}: {size} bytes, but its header describes {expected}")
            data = bytearray(count * dtype.itemsize)
            first = head[fp.tell():]
            data[:len(first)] = first
            self._fill(f, name, data, len(first))
        flat = np.frombuffer(data, dtype, count=count)
        array = _c_order(flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape))
        if _array_sha256(array) != digest:
            raise _Problem(f"{what}: sha256 mismatch (the array bytes were changed or corrupted)")
        return array

    def array(self, name: str, where: str) -> np.ndarray:
        if name not in self.arrays:
            raise _Problem(f"{where}: array entry {name!r} is not in the array manifest")
        self.referenced.add(name)
        return self.arrays[name]
