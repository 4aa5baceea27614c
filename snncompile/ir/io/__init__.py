"""The ``.snnir`` file format: the one way a :class:`~snncompile.ir.graph.Graph` is written and read.

This docstring is the specification of the format. Only this package knows it.

API
---
- ``save(graph, path) -> Path`` and ``load(path) -> Graph``. ``to_bytes(graph)`` and
  ``from_bytes(data, source=...)`` do the same in memory.
- ``graph_digest(graph) -> str``: the sha256 of the graph's content (see *Digest*). The pass pipeline
  stores it in ``HistoryEntry.digest``.
- ``IRFileError(ValueError)``: any file this module cannot read or write. The message starts with the
  file (or ``source``) and then says what is wrong, naming the node and field where there is one. A file
  that does not exist raises the usual ``FileNotFoundError``.

Container (format_version 3)
----------------------------
A zip archive (``.snnir``) with these entries, in sorted name order. Every entry has the timestamp
1980-01-01 00:00:00, Unix mode 0644 and deflate compression (level 6; level 1 for an entry over 1 MiB, a
large model's weights, where level 6 would take most of the time of a compile), so equal graphs give byte-equal
files. The entries are:

- ``graph.json``: the document below, UTF-8 JSON with ASCII escapes.
- ``arrays/<node index, 4+ digits>.<field>.npy``: one entry per parameter array, written by
  ``numpy.save`` in C order, ``.npy`` format version 1.0 or 2.0. Only bool, int, uint, float and
  complex dtypes are allowed, never object or structured dtypes.

There are no other entries. ``graph.json`` is an object with exactly these keys:

.. code-block:: text

    {"format": "snncompile-ir",          # magic
     "format_version": 3,                # integer, independent of the package version
     "time_steps": 4,
     "outputs": ["out"],
     "nodes": [                          # in graph order (the order is meaningful)
       {"name": "conv1", "type": "Conv2d",          # type: the class name in OPS_BY_NAME
        "inputs": ["x"],                             # producer names, in input-port order
        "out": {"shape": [8, 32, 32], "dtype": "float32", "time": "stream"},  # the output type
        "fields": {"weight": {"array": "arrays/0001.weight.npy"}, "bias": null,
                   "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}}, ...],
     "schedule": {"data_steps": 4,        # or null: the graph is unscheduled
                  "latency": {"x": 0, "conv1": 1, ...},   # every node, in graph order
                  "delay_lines": ["x.delay1"]},
     "scales": {"conv1": 0.0123, ...},   # or null: the graph is not quantised
     "history": [{"name": "fold_batchnorm", "options": {...values...}, "digest": "<hex>"}, ...],
     "arrays": {"arrays/0001.weight.npy": {"dtype": "<f4", "shape": [8, 3, 3, 3], "sha256": "<hex>"}}}

Each node entry has exactly the keys ``name``, ``type``, ``inputs``, ``out`` and ``fields`` (written in
that order).

``out`` records the node's output type (:class:`~snncompile.ir.types.TensorType`), as
``Graph.types()`` infers it, so that a reader sees every tensor's shape, dtype and time layout without
running inference. It is an object with exactly these keys: ``shape``, the per-sample, per-timestep shape
as a list of non-negative integers (``[]`` for a scalar); ``dtype``, the ``DType`` in its canonical
``str`` form (``"float32"``, ``"spike"``, ``"ternary"``, ``"int8"``, ``"uint5"``; ``DType.parse`` reads
it back); ``time``, ``"stream"`` or ``"static"``. ``out`` is derived data: ``save`` writes what inference
gives, and ``load`` checks that every recorded ``out`` equals the type inferred from the loaded graph.

``schedule`` and ``scales`` are ``Graph.schedule`` and ``Graph.scales`` (what the ``schedule`` and
``quantize`` passes decided; ``history`` is provenance only): ``schedule`` is null or an object with exactly
the keys ``data_steps`` (integer), ``latency`` (node name -> integer, every node once, in graph order) and
``delay_lines`` (a list of node names); ``scales`` is null or an object node name -> finite number, in
graph order. ``load`` refuses a schedule or scales that do not name the graph's nodes, a ``Delay`` node
for each delay line, a run of ``data_steps`` + the largest latency steps and positive finite scales (the
``Graph.problems()`` checks).

``fields`` holds every init field of the node's dataclass, no more and no fewer. The ``arrays``
manifest lists every array entry: ``dtype`` is numpy's ``dtype.str`` (byte order included), and
``sha256`` is over the array's raw bytes in C order. Each entry is referenced at least once.

Values
------
Field values and history option values use one tagged JSON encoding, the same for every node type:

==================================  ==================================================
Python                              JSON
==================================  ==================================================
``None``, ``bool``, ``int``, ``str``  ``null``, ``true``/``false``, integer, string
finite ``float``                    JSON number, written by ``repr`` (exact round trip)
``inf``, ``-inf``, ``nan``          ``{"float": "inf"}``, ``{"float": "-inf"}``, ``{"float": "nan"}``
``tuple``                           JSON array (JSON arrays always read back as tuples)
``list``                            ``{"list": [...]}``
``dict`` with str keys              ``{"dict": {...}}``
:class:`~snncompile.ir.types.DType` ``{"dtype": "int8"}`` (``str``/``DType.parse``)
``numpy.ndarray`` (field level)     ``{"array": "<entry name>"}``
==================================  ==================================================

Every JSON object inside a value has exactly one of these tag keys. Arrays are allowed only as the
direct value of a node field, not nested inside other values and not in history options. A field's
value must also match the field's type annotation: ``tuple[int, int]``, ``Literal[...]``,
``float | np.ndarray``, ``DType`` and so on. ``float`` accepts ints. ``save`` and ``load`` both check
this.

Reading
-------
``load`` never runs code from the file: it uses JSON, numpy's ``.npy`` header reader, and ``np.frombuffer``
over the array's bytes (never ``np.load``, never pickle). Every size is checked before the memory for it is
taken: an entry is decompressed a chunk at a time into one buffer of its declared size, and an array is a
view of its entry's buffer (the node then keeps its own frozen copy), so reading holds at most about the
declared sizes of the entries, plus graph.json's parsed objects (up to about 40 times its bytes). The limits
are constants of this package (README, "Resource limits"). It refuses each of these with an ``IRFileError``:

- not a zip, or truncated or corrupt (bad CRC);
- encrypted entries, compression other than stored or deflate, duplicate entry names;
- an entry name that is absolute or contains ``..``, a backslash, or an empty component;
- an entry with a declared size over ``MAX_ENTRY_BYTES`` (2 GiB);
- entries whose sizes add up to more than ``MAX_TOTAL_BYTES`` (4 GiB);
- a ``graph.json`` over ``MAX_JSON_BYTES`` (32 MiB), or nested more than ``MAX_JSON_DEPTH`` (100) arrays and
  objects deep;
- an entry over ``RATIO_MIN_BYTES`` whose compression ratio is above ``MAX_RATIO`` (deflate
  cannot go beyond about 1032:1, so such an entry is a bomb or a lie), and entries whose sizes add up to
  more than ``MAX_RATIO`` times the file's size (entries that share their compressed data);
- more than ``MAX_NODES`` (100,000) nodes, and a dtype wider than ``MAX_DTYPE_BITS`` (256) bits;
- an array whose manifest shape has more than 32 dimensions or describes more than ``MAX_ENTRY_BYTES``
  of data, or whose entry's size is not its ``.npy`` header's and that data's (checked before the data is
  decompressed);
- a missing ``graph.json``, JSON that does not parse, a duplicated JSON key, or ``NaN``/``Infinity``
  literals;
- the wrong magic, or a ``format_version`` that is newer than this package or has no upgrade path;
- an unknown node type, an unknown or missing field, a value of the wrong type, or an unknown tag;
- a duplicated node name;
- a node's ``out`` that is missing, is not an object with exactly the keys ``shape``, ``dtype`` and
  ``time``, has a shape that is not a list of non-negative integers, a dtype that is unknown or not in
  canonical form, or a time layout other than ``stream``/``static``;
- an array missing from the manifest or from the zip, a manifest entry no field references, or an
  unexpected entry;
- a ``.npy`` header whose dtype or shape differs from the manifest, a size that does not match the
  header, an object or structured dtype, or a sha256 mismatch;
- a graph that is well-formed but invalid: the ``Graph.problems()`` list is reported;
- a valid graph in which a node's recorded ``out`` differs from its inferred type: the message names the
  node, the recorded type, the inferred type and which of shape, dtype and time differ. This check comes
  after the ``Graph.problems()`` check, since types can only be inferred for a valid graph.

Versions and upgrades
---------------------
``FORMAT_VERSION`` is the version this package writes. A file with a higher version is refused, and the
message names the versions this package reads. A file with a lower version ``v`` is carried forward by
``UPGRADES[v]``, then ``UPGRADES[v + 1]``, and so on, before any other check. A missing step is an
error. Each step is a function ``doc -> doc`` on the decoded ``graph.json`` object. After each step the
loader sets ``format_version``. Array entries stay as they are: a step may rename, re-point or drop
``{"array": ...}`` references and their manifest entries. It cannot create array data.

To change the format, for example when an op gains, loses or renames a field (any change to an op's
dataclass fields changes the format), do all of the following. A change to an op's type inference that
changes the output type of existing files' nodes changes the format too (``load`` would refuse those
files' ``out`` records); its upgrade step rewrites the affected ``out`` records.

1. Bump ``FORMAT_VERSION`` to ``N + 1`` and add a line to the changelog below.
2. Write ``def upgrade_vN_to_vN1(doc: dict) -> dict`` that rewrites a version-``N`` document into
   version ``N + 1``. For a new field ``LIF.delay: int = 0``, it sets ``node["fields"]["delay"] = 0``
   for every node whose ``type`` is ``"LIF"``.
3. Register it with ``UPGRADES[N] = upgrade_vN_to_vN1``.
4. Commit a version-``N`` file under ``tests/data/`` (or have the test write a version-``N`` document by
   down-converting a current one) and a test that loads it.

Changelog: version 1, the first format. (Before version 1 was first released, node entries gained the
``out`` record; as no version-1 file without it was ever released, that needed no version bump.)
Version 2: ``IntDense``/``IntConv2d`` gained ``bias``, ``Repeat`` ``data_steps``, ``TimeMean`` ``start``
and ``steps``; a ``SumPool2d`` of spikes or integers is typed as an integer sum (it was float32); new node
types of the integer lowering. ``upgrade_v1_to_v2`` (``upgrades.py``); ``tests/data/format_v1.snnir``.
Version 3: the ``schedule`` and ``scales`` records (version 2 kept them only in its history, where the
passes' reports still have them). ``upgrade_v2_to_v3`` recovers them from the last ``schedule`` and
``quantize`` history entries; ``tests/test_ir_io.py`` writes its version-2 documents by down-converting a
version-3 one (no binary fixture).
Version 4: ``LoihiLIF`` gained ``reset_at`` (a restart of ``u`` and ``v``: Lava's ``LIFReset``);
``upgrade_v3_to_v4`` gives version-3 neurons 0 (they never restart); ``tests/test_ir_io.py`` down-converts.
Version 5: ``IntAdd`` gained ``bias`` and ``bias_start`` (a constant term: synapse biases moved into the sum);
``upgrade_v4_to_v5`` gives version-4 sums none; ``tests/test_ir_io.py`` down-converts.
Version 6: ``IntDense``, ``IntConv2d`` and ``IntAdd`` gained ``bias_steps`` (a scheduled bias acts in its data
window only, so a drained pipeline is silent); ``upgrade_v5_to_v6`` gives version-5 nodes 0 (to the end of the
run, as they were); ``tests/test_ir_io.py`` down-converts.

Digest
------
``graph_digest(graph)`` is the sha256 of the compact, key-sorted, ASCII JSON encoding of
``{"scheme": "snncompile-ir-digest/1", "time_steps", "outputs", "nodes": [[name, type, inputs,
fields], ...]}``, plus the ``schedule`` and ``scales`` records (as in ``graph.json``) for a graph that has
them: they change what the graph's values mean, so a scheduled or quantised graph differs from the same
nodes without them; a graph without them has the digest it had before format version 3. A field added in
version 4 or later (``LoihiLIF.reset_at``, ``IntAdd.bias``, ``bias_steps``) is left out at its upgrade value, so the digest is version 3's. Values use the
encoding above, except that an array becomes ``{"array": {"dtype": dtype.str, "shape": [...], "sha256":
<raw C-order bytes>}}``. It covers structure, node order, every field, array bytes, dtypes and shapes,
the schedule and the scales. It leaves out ``history``, so that a pass can store the
digest of its result in that result's history, and the recorded ``out`` types, which are derived from
the rest (so ``graph_digest`` never runs type inference and works on invalid graphs too). It does not
depend on the file format version or on entry names. Equal graphs have equal digests. ``load(save(g))``
has the digest of ``g``.
"""
from __future__ import annotations

from typing import Callable

from .loader import from_bytes, load
from .values import IRFileError, _field_hints  # noqa: F401  (_field_hints: for the tests)
from .upgrades import upgrade_v1_to_v2, upgrade_v2_to_v3, upgrade_v3_to_v4, upgrade_v4_to_v5, upgrade_v5_to_v6
from .writer import graph_digest, save, to_bytes

MAGIC = "snncompile-ir"
FORMAT_VERSION = 6
SUFFIX = ".snnir"
DIGEST_SCHEME = "snncompile-ir-digest/1"

GRAPH_ENTRY = "graph.json"
# Limits (README, "Resource limits"), checked before anything is allocated. graph.json parses into Python
# objects of up to about 40 times its size; a zoo model's is 70 KB (about 1 KB a node).
MAX_ENTRY_BYTES = 2 * 1024 ** 3
MAX_TOTAL_BYTES = 4 * 1024 ** 3
MAX_JSON_BYTES = 32 * 1024 ** 2
MAX_JSON_DEPTH = 100
MAX_NODES = 100_000
MAX_DTYPE_BITS = 256
MAX_ENTRIES = 100_000
MAX_RATIO = 1100
RATIO_MIN_BYTES = 1024 ** 2

# Upgrade steps: UPGRADES[v] turns a format_version-v graph.json document into version v + 1.
# See "Versions and upgrades" in the docstring above.
Upgrade = Callable[[dict], dict]
UPGRADES: dict[int, Upgrade] = {1: upgrade_v1_to_v2, 2: upgrade_v2_to_v3, 3: upgrade_v3_to_v4,
                                4: upgrade_v4_to_v5, 5: upgrade_v5_to_v6}


def readable_versions() -> list[int]:
    """The format versions this package loads: ``FORMAT_VERSION`` and every version with an upgrade path."""
    versions = [FORMAT_VERSION]
    v = FORMAT_VERSION - 1
    while v in UPGRADES:
        versions.insert(0, v)
        v -= 1
    return versions


__all__ = ["IRFileError", "save", "load", "to_bytes", "from_bytes", "graph_digest", "readable_versions",
           "FORMAT_VERSION", "MAGIC", "SUFFIX", "UPGRADES"]
