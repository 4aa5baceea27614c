"""Reading a ``.nir`` file without trusting it: :func:`read_nir` (for :func:`snncompile.frontend.nir_import.from_nir`).

``nir.read`` follows whatever the HDF5 file says: external links, external raw storage and virtual datasets read
other local files, soft and hard links can make its walk loop, a declared shape is allocated whatever its size,
and a gzip chunk inflates without bound. :func:`read_tree` walks the file itself, link by link, and refuses all of
that before a single value is read; then it reads the values exactly as ``nir.read`` would (the same nested dict),
and :func:`build_graph` makes the nir nodes from it one by one, so that a refusal names the node. Every refusal
is a :class:`~snncompile.frontend.nir_graph.NIRImportError` of one line naming the file; ``docs/nir.md`` lists
the limits.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .nir_graph import MAX_EDGES, MAX_NAME, MAX_NODES, NIRImportError

MAX_DATASET_BYTES = 256 * 2**20  # one dataset (or one chunk of it), as declared: shape x item size
MAX_DATA_BYTES = 512 * 2**20  # all datasets of a file together
MAX_OBJECTS = 50_000  # groups and datasets (walking them takes a few seconds)
MAX_DEPTH = 64  # nested groups (a nested NIRGraph takes two)
STRING_BYTES = 128  # what one variable-length string counts towards the limits (it becomes a Python object)
FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
           h5py.h5z.FILTER_FLETCHER32: "fletcher32"}  # what nir.write and h5py write; others are refused
# what h5py raises for a file it cannot parse (its HDF5 error classes map onto these)
H5PY_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, NotImplementedError)


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class _Walk:
    """The budget of one file's walk: objects seen (by address: a hard link reaching one twice is refused) and
    bytes declared."""

    def __init__(self):
        self.seen: dict[int, str] = {}
        self.bytes = 0

    def visit(self, obj_id, path: str) -> None:
        address = h5py.h5o.get_info(obj_id).addr
        if address in self.seen:
            raise NIRImportError(f"{path} is the object {self.seen[address]} again (a hard link; NIR files are "
                                 f"trees, and a link back up would make the reader loop)")
        self.seen[address] = path
        if len(self.seen) > MAX_OBJECTS:
            raise NIRImportError(f"more than {MAX_OBJECTS} groups and datasets (the limit)")


def _check_dataset(ds: h5py.Dataset, path: str, walk: _Walk) -> None:
    """Refuse, before reading: data kept outside the file, filters other than FILTERS, types that are not numbers
    or strings, and declared sizes over the limits; inflate each gzip chunk with a bound."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise NIRImportError(f"dataset {path} is a virtual dataset (its values are read from other files); a NIR "
                             f"file must hold its own data")
    if plist.get_external_count():
        name = plist.get_external(0)[0].decode("utf8", "replace")
        raise NIRImportError(f"dataset {path} keeps its values in the external file {name!r}; a NIR file must hold "
                             f"its own data")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(f not in FILTERS for f in filters):
        raise NIRImportError(f"dataset {path} uses HDF5 filter(s) {[f for f in filters if f not in FILTERS]}; "
                             f"only {', '.join(FILTERS.values())} are read")
    dtype = ds.dtype
    string = h5py.check_string_dtype(dtype) is not None
    if not (string or (dtype.kind in "biufS" and dtype.fields is None and dtype.subdtype is None)):
        raise NIRImportError(f"dataset {path} has the type {dtype}; NIR values are numbers or strings")
    if ds.shape is None:
        raise NIRImportError(f"dataset {path} has no value (an empty dataspace)")
    item = STRING_BYTES if dtype.kind == "O" else dtype.itemsize
    size = math.prod(ds.shape) * item
    chunk = math.prod(ds.chunks) * item if ds.chunks else 0
    if max(size, chunk) > MAX_DATASET_BYTES:
        raise NIRImportError(f"dataset {path} declares {max(size, chunk)} bytes (shape {ds.shape}, chunks "
                             f"{ds.chunks}); the limit is {MAX_DATASET_BYTES}")
    walk.bytes += size
    if walk.bytes > MAX_DATA_BYTES:
        raise NIRImportError(f"the datasets declare more than {MAX_DATA_BYTES} bytes together (the limit)")
    if h5py.h5z.FILTER_DEFLATE in filters:
        _check_inflated_chunks(ds, path, chunk + 4)  # fletcher32 may append its 4-byte checksum


def _check_inflated_chunks(ds: h5py.Dataset, path: str, limit: int) -> None:
    """HDF5 inflates a gzip chunk to its end however large it gets: inflate each one here first, to ``limit``
    (zlib stops at the stream's end, so a fletcher32 checksum stored after it does not matter)."""
    plist = ds.id.get_create_plist()
    pipeline = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
    skipped = 1 << pipeline.index(h5py.h5z.FILTER_DEFLATE)  # the chunk's filter mask bit: stored uncompressed
    chunks = ds.id.get_num_chunks()
    if chunks > MAX_OBJECTS:
        raise NIRImportError(f"dataset {path} has {chunks} chunks; the limit is {MAX_OBJECTS}")
    for i in range(chunks):
        mask, raw = ds.id.read_direct_chunk(ds.id.get_chunk_info(i).chunk_offset)
        if mask & skipped:
            continue
        try:
            inflated = zlib.decompressobj().decompress(raw, limit + 1)
        except zlib.error as e:
            raise NIRImportError(f"dataset {path}: a compressed chunk is corrupt ({e})") from None
        if len(inflated) > limit:
            raise NIRImportError(f"dataset {path}: a compressed chunk inflates beyond the {limit - 4} bytes its "
                                 f"chunk shape declares (a decompression bomb)")


def _read_group(group: h5py.Group, path: str, depth: int, walk: _Walk) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise NIRImportError(f"{'/'.join(path.split('/')[:4])}/... nests groups more than {MAX_DEPTH} deep (the "
                             f"limit)")
    out: dict[str, Any] = {}
    for raw_name in group.id:
        try:
            name = raw_name.decode("utf8")
        except UnicodeDecodeError:
            raise NIRImportError(f"{path} holds a member whose name is not UTF-8 text ({raw_name[:40]!r})") from None
        if len(name) > MAX_NAME:
            raise NIRImportError(f"{path} holds a member whose name has more than {MAX_NAME} characters")
        try:
            out[name] = _read_member(group, raw_name, f"{path}/{name}", depth, walk)
        except NIRImportError:
            raise
        except H5PY_ERRORS as e:
            raise NIRImportError(f"{path}/{name} cannot be read ({_described(e)})") from None
    return out


def _read_member(group: h5py.Group, raw_name: bytes, member: str, depth: int, walk: _Walk):
    """A group's member as ``nir.read`` reads it (a dict, or a dataset's value with bytes decoded), once it is
    known to be a group or dataset of this file, within the limits."""
    kind = group.id.links.get_info(raw_name).type
    if kind != h5py.h5l.TYPE_HARD:
        what = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link (to another file)"}
        raise NIRImportError(f"{member} is {what.get(kind, 'a user-defined link')}; a NIR file holds its groups "
                             f"and datasets directly")
    obj_id = h5py.h5o.open(group.id, raw_name)
    walk.visit(obj_id, member)
    if isinstance(obj_id, h5py.h5g.GroupID):
        return _read_group(h5py.Group(obj_id), member, depth + 1, walk)
    if not isinstance(obj_id, h5py.h5d.DatasetID):
        raise NIRImportError(f"{member} is neither a group nor a dataset")
    ds = h5py.Dataset(obj_id)
    _check_dataset(ds, member, walk)
    value = ds[()]
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf8")  # as nir.read
    except UnicodeDecodeError:
        raise NIRImportError(f"dataset {member} holds text that is not UTF-8") from None


def read_nir(path: str | Path, type_check: bool | None = None):
    """The ``nir.NIRGraph`` of a ``.nir`` file, as ``nir.read`` gives it, read without trusting the file (module
    docstring). ``type_check``: nir's type checking of the top graph; by default on, and off when it fails
    (Rockpool and Norse 1.1.0 files fail the nir 1.0.8 checks; the importer re-infers every shape itself).
    Raises :class:`NIRImportError` naming the file and what in it is wrong."""
    try:
        tree = read_tree(path)
        if type_check is not None:
            return build_graph(tree, type_check)
        try:
            return build_graph(tree, True)
        except NIRImportError:
            return build_graph(tree, False)
    except NIRImportError as e:
        raise NIRImportError(f"{path}: {e}") from None


def read_tree(path: str | Path) -> dict[str, Any]:
    """The ``/node`` group of a NIR file as the nested dict ``nir.read`` builds (strings decoded), after checking
    every link, dataset and size (module docstring); a file HDF5 cannot parse is refused too."""
    try:
        with h5py.File(path, "r") as f:
            if not f.id.links.exists(b"node"):
                raise NIRImportError("no /node group: not a NIR file")
            return _read_group(f, "", 0, _Walk())["node"]
    except NIRImportError:
        raise
    except FileNotFoundError:
        raise NIRImportError("no such file") from None
    except H5PY_ERRORS as e:
        raise NIRImportError(f"unreadable HDF5 ({_described(e)})") from None


# -- nir nodes from the tree ------------------------------------------------------------------------------------
def build_node(data, name: str, extra: dict | None = None):
    """``nir.dict2NIRNode`` node by node: a refusal names the node (``sub.node`` inside subgraphs)."""
    import nir

    where = f"node {name!r}" if name else "the graph"
    if not isinstance(data, dict):
        raise NIRImportError(f"{where} is a dataset, not a group")
    kind = data.get("type")
    try:
        node_class = nir.str2NIRNode(kind) if isinstance(kind, str) else None
    except (AssertionError, KeyError):  # nir asserts that the name is one of its node types
        node_class = None
    if node_class is None:
        raise NIRImportError(f"{where} has the type {str(kind)[:40]!r}, not a NIR node type")
    fields = dict(data, **(extra or {}))
    try:
        if node_class is not nir.NIRGraph:
            return node_class.from_dict(fields)
        # NIRGraph.from_dict with its nodes built here, so that a refusal names the node
        if not isinstance(data.get("nodes"), dict):
            raise NIRImportError(f"{where} (NIRGraph) has no 'nodes' group")
        if len(data["nodes"]) > MAX_NODES:
            raise NIRImportError(f"{where} (NIRGraph) has more than {MAX_NODES} nodes (the limit)")
        prefix = f"{name}." if name else ""
        fields["nodes"] = {k: build_node(v, prefix + k) for k, v in data["nodes"].items()}
        fields["edges"] = _edges(data.get("edges"), where)
        del fields["type"]
        return nir.NIRGraph(**fields)
    except NIRImportError:
        raise
    except KeyError as e:
        raise NIRImportError(f"{where} ({kind}) has no field {e}") from None
    except Exception as e:  # noqa: BLE001 - nir checks the fields it is given with asserts and numpy arithmetic
        raise NIRImportError(f"{where} ({kind}): nir refuses its fields ({_described(e)})") from None


def _edges(value, where: str) -> list[tuple[str, str]]:
    if value is None:
        raise NIRImportError(f"{where} (NIRGraph) has no 'edges' dataset")
    a = np.asarray(value)
    if a.size == 0:
        return []
    if a.ndim != 2 or a.shape[1] != 2 or a.dtype.kind not in "OS":
        raise NIRImportError(f"{where}: 'edges' must be pairs of node names, got shape {a.shape} of {a.dtype}")
    if len(a) > MAX_EDGES:
        raise NIRImportError(f"{where} (NIRGraph) has more than {MAX_EDGES} edges (the limit)")
    edges = []
    for src, dst in a:
        try:
            edges.append((_text(src), _text(dst)))
        except (UnicodeDecodeError, TypeError):
            raise NIRImportError(f"{where}: an edge is not a pair of node names ({src!r}, {dst!r})") from None
    return edges


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, str):
        return value
    raise TypeError(value)


def build_graph(tree: dict, type_check: bool):
    """The nir graph of a file's ``/node`` tree; ``type_check`` as ``nir.read``'s (top graph only, as there)."""
    if "type_check" in tree:
        raise NIRImportError("the graph has a 'type_check' entry, which nir.read refuses")
    return build_node(tree, "", {"type_check": type_check})
