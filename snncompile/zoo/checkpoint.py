"""Read and write model checkpoints without ever executing code from the file.

Three kinds of file load into a :class:`~snncompile.nn.sdt.SpikeDrivenTransformer`:

- ``snncompile``: our own format, written by :func:`save_checkpoint` — plain types and tensors only,
  with the full :class:`ModelConfig` embedded.
- ``upstream``: a timm ``CheckpointSaver`` file from the STAtten or Spike-Driven Transformer
  repositories (``arch``, ``args``, ``epoch``, ``metric``, ``optimizer``, ``state_dict``, ...). The
  architecture is read from ``args`` (an ``argparse.Namespace``) and the weight shapes.
- ``state_dict``: a bare ``{name: tensor}`` file; the caller supplies the configuration.

A pickle can name any importable callable and have it called, so ``torch.load`` on an untrusted file
can run arbitrary code, and torch 2.3's ``weights_only=True`` refuses the ``argparse.Namespace`` that
every upstream checkpoint contains. :func:`read_torch_file` therefore reads torch's zip format itself:
its unpickler resolves only an explicit allowlist of globals (:data:`ALLOWED_GLOBALS`) and rebuilds
tensors from the zip's storage records; any other global is refused before it is imported.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import dataclasses
import io
import numbers
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..nn.sdt import SpikeDrivenTransformer, build_model
from ..config import ConfigError, ModelConfig, model_config_from_dict

FORMAT = "snncompile-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file."""


# ------------------------------------------------------------------------------------------------
# Safe reader for torch's zip serialization format
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
    if not (_is_int(storage_offset) and storage_offset >= 0):
        raise ValueError(f"bad storage offset {storage_offset!r}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or not all(_is_int(v) and v >= 0 for v in size + stride):
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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) \
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


# ------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------

def _plain(value: Any, where: str) -> Any:
    """Return ``value`` with numbers made builtin; TypeError for anything the reader would refuse."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: keys must be strings, got {bad[0]!r}")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: {type(value).__name__} is not a plain type (str, number, bool, None, "
                    "tensor, list, tuple, dict)")


def save_checkpoint(path: str | Path, model: SpikeDrivenTransformer, *, name: str | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (weights + full config) in the ``snncompile`` format and return the path.

    Only plain types and tensors are stored, so :func:`load_checkpoint` reads the file back without
    allowing any class; no optimizer state is kept. The file is written next to ``path`` and renamed
    into place, so an interrupted save never leaves a truncated checkpoint.
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"save_checkpoint needs a model with a ModelConfig .cfg, got {type(model).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "config": dataclasses.asdict(cfg),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "extra": _plain(dict(extra or {}), "extra"),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------
# Loading into a model
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint loaded into a model, with where its configuration came from."""

    model: SpikeDrivenTransformer  # in eval mode, on the CPU
    config: ModelConfig
    source: Literal["snncompile", "upstream", "state_dict"]
    metrics: dict
    name: str | None
    notes: list[str]               # human-readable remarks on inferences, overrides, dropped keys
    path: Path
    extra: dict = field(default_factory=dict)  # save_checkpoint(extra=...) of our format
    dataset: str | None = None     # DataConfig.dataset the file was trained on, when it says so


# upstream args attribute -> ModelConfig field
_ARGS_FIELDS = {
    "time_steps": "time_steps", "chunk_size": "chunk_size", "num_heads": "num_heads",
    "num_classes": "num_classes", "pooling_stat": "pooling_stat", "img_size": "img_size", "dim": "dim",
    "mlp_ratio": "mlp_ratio", "in_channels": "in_channels", "layer": "layers",
    "spike_mode": "spike_mode", "TET": "tet", "dvs_mode": "dvs_mode",
}
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(ModelConfig)}  # "int", "bool", ...
# Datasets for which upstream train.py switches dvs_mode on when args has no dvs_mode (models.md §2.5, §3.8).
_DVS_DATASETS_STATTEN = {"cifar10-dvs", "ncaltech101"}
_DVS_DATASETS_SDT = {"cifar10-dvs", "cifar10-dvs-tet"}
# upstream --dataset values -> DataConfig.dataset
_UPSTREAM_DATASETS = {"torch/cifar10": "cifar10", "cifar10": "cifar10", "cifar10-dvs": "cifar10-dvs",
                      "cifar10-dvs-tet": "cifar10-dvs", "ncaltech101": "ncaltech101",
                      "torch/imagenet": "imagenet", "imagenet": "imagenet"}
# Architecture fields that neither weight shapes nor defaults can supply.
_REQUIRED = ("attention", "img_size", "time_steps", "pooling_stat", "dim", "num_heads", "in_channels",
             "num_classes", "layers", "mlp_ratio")
# Fields whose ModelConfig default (False) matches upstream's default; used with a note when unknown.
_DEFAULTED = ("dvs_mode", "tet")

# The only parametric-LIF weights of a plif model (STAtten keeps every other neuron LIF, models.md §1.5).
_PLIF_KEY = re.compile(r"(^|\.)(fc1_lif|fc2_lif|head_lif)\.w$")
# Upstream parameters that are never used in forward (models.md §9.1.8); dropped with a note when
# our model lacks them. Pattern -> (applies to attention mode, or None for all; reason).
_DEAD_PARAMETERS = (
    (re.compile(r"^patch_embed\.rpe_lif\."), None, "rpe_lif is defined but never called upstream"),
    (re.compile(r"^block\.\d+\.attn\.attn_lif\."), "SDT", "attn_lif is unused in SDT (SDSA) mode"),
)


@dataclass
class _Parsed:
    """What a file contributes before the model is built."""

    source: Literal["snncompile", "upstream", "state_dict"]
    state_dict: dict
    fields: dict            # ModelConfig fields known from the file (embedded config, args, shapes)
    suggested_attention: str | None = None
    attention_note: str | None = None  # why the file suggests that mode; kept unless overridden
    metrics: dict = field(default_factory=dict)
    name: str | None = None
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dataset: str | None = None


def load_checkpoint(path: str | Path, *, attention: str | None = None,
                    config: ModelConfig | dict | None = None, strict: bool = True) -> LoadedCheckpoint:
    """Load any supported checkpoint into a fresh model in eval mode.

    ``attention`` overrides the attention mode; ``config`` is either a complete :class:`ModelConfig`
    (used as is, apart from ``attention``) or a dict of field overrides that win over what the file
    says. With ``strict`` every missing, unexpected or mis-shaped key is an error (all listed in one
    :class:`CheckpointError`); with ``strict=False`` matching weights load and the rest is recorded
    in ``notes``.
    """
    path = Path(path)
    if config is not None and not isinstance(config, (ModelConfig, dict)):
        raise TypeError(f"config must be a ModelConfig or a dict of overrides, got {type(config).__name__}")
    if isinstance(config, dict) and attention is not None and config.get("attention", attention) != attention:
        raise ValueError(f"attention={attention!r} contradicts config['attention']={config['attention']!r}")
    obj = read_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        parsed = _parse_snncompile(path, obj)
    elif isinstance(obj, dict) and "state_dict" in obj:
        parsed = _parse_upstream(path, obj)
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if config is None:
            raise CheckpointError(
                f"{path}: a bare state_dict carries no architecture; pass config= (a ModelConfig, or a "
                "dict with at least attention, img_size, time_steps and pooling_stat; the remaining "
                "sizes are read from the weight shapes)")
        notes: list[str] = []
        state_dict = _strip_module_prefix(dict(obj), notes)
        parsed = _Parsed("state_dict", state_dict, _infer_from_shapes(state_dict), notes=notes)
    else:
        keys = f"keys {sorted(map(str, obj))[:12]}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a model checkpoint: expected our format, a timm checkpoint "
                              f"with a state_dict, or a state_dict; found {keys}")
    cfg = _resolve_config(path, parsed, attention, config)
    model = _load_weights(path, cfg, parsed.state_dict, strict, parsed.notes)
    return LoadedCheckpoint(model=model, config=cfg, source=parsed.source, metrics=parsed.metrics,
                            name=parsed.name, notes=parsed.notes, path=path, extra=parsed.extra,
                            dataset=parsed.dataset)


def _parse_snncompile(path: Path, obj: dict) -> _Parsed:
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: {FORMAT} format_version {version!r} is not supported "
                              f"(this snncompile reads version {FORMAT_VERSION})")
    problems = [f"{key} is missing" for key in ("config", "state_dict") if key not in obj]
    problems += [f"{key} must be a dict" for key in ("config", "state_dict", "metrics", "extra")
                 if not isinstance(obj.get(key, {}), dict)]
    if not isinstance(obj.get("name"), (str, type(None))):
        problems.append("name must be a string or None")
    if problems:
        raise CheckpointError(f"{path}: malformed {FORMAT}: " + "; ".join(problems))
    metrics = obj.get("metrics", {})
    return _Parsed("snncompile", obj["state_dict"], dict(obj["config"]), metrics=metrics,
                   name=obj.get("name"), extra=obj.get("extra", {}), dataset=metrics.get("dataset"))


def _parse_upstream(path: Path, obj: dict) -> _Parsed:
    notes: list[str] = []
    state_dict = obj["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a dict")
    state_dict = _strip_module_prefix(dict(state_dict), notes)
    if "state_dict_ema" in obj:
        notes.append("file also holds state_dict_ema (EMA weights); loaded state_dict")
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    elif args is not None and not isinstance(args, dict):
        raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, not an argparse.Namespace")
    arch = obj.get("arch", (args or {}).get("model"))
    if arch is not None and arch != "sdt":
        notes.append(f"arch {arch!r} is not the Spike-Driven Transformer ('sdt'); loading it as one")

    fields = _infer_from_shapes(state_dict)
    suggested = note = None
    if args is not None:
        for attr, name in _ARGS_FIELDS.items():
            if args.get(attr) is not None:
                fields[name] = _coerce(args[attr], _FIELD_TYPES[name])
        from_statten = "attention_mode" in args
        if from_statten:
            suggested = "STAtten"
            if args["attention_mode"] != "STAtten":
                note = (f"attention_mode {args['attention_mode']!r} in args is ignored by upstream "
                        "STAtten train.py (it never passes it to the model); using STAtten")
        else:
            suggested = "SDT"
            note = ("args has no attention_mode: a Spike-Driven Transformer repository checkpoint; "
                    "using SDT (SDSA) attention")
        if args.get("dvs_mode") is None and isinstance(args.get("dataset"), str):
            dvs_sets = _DVS_DATASETS_STATTEN if from_statten else _DVS_DATASETS_SDT
            fields["dvs_mode"] = args["dataset"] in dvs_sets
            notes.append(f"dvs_mode={fields['dvs_mode']} derived from args.dataset {args['dataset']!r}")
    metrics: dict = {}
    if _is_int(obj.get("epoch")):
        metrics["epoch"] = obj["epoch"]
    if isinstance(obj.get("metric"), numbers.Real) and not isinstance(obj["metric"], bool):
        metrics["metric"] = float(obj["metric"])
        if args is not None and isinstance(args.get("eval_metric"), str):
            metrics["eval_metric"] = args["eval_metric"]
    return _Parsed("upstream", state_dict, fields, suggested_attention=suggested, attention_note=note,
                   metrics=metrics, notes=notes, dataset=_UPSTREAM_DATASETS.get((args or {}).get("dataset")))


def _coerce(value: Any, kind: str) -> Any:
    """Make argparse/numpy values match ModelConfig field types where that loses nothing."""
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind == "bool" and isinstance(value, np.bool_):
        return bool(value)
    return value


def _strip_module_prefix(state_dict: dict, notes: list[str]) -> dict:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds, if every key has it."""
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        notes.append("stripped the 'module.' prefix ((Distributed)DataParallel) from every key")
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _shape(state_dict: dict, key: str, ndim: int) -> tuple[int, ...] | None:
    t = state_dict.get(key)
    return tuple(t.shape) if isinstance(t, torch.Tensor) and t.dim() == ndim else None


def _infer_from_shapes(state_dict: dict) -> dict:
    """ModelConfig fields implied by weight shapes (only those the weights determine)."""
    out: dict = {}
    if s := _shape(state_dict, "patch_embed.proj_conv3.weight", 4):
        out["dim"] = s[0]
    if s := _shape(state_dict, "patch_embed.proj_conv.weight", 4):
        out["in_channels"] = s[1]
    if s := _shape(state_dict, "head.weight", 2):
        out["num_classes"] = s[0]
    if s := _shape(state_dict, "block.0.attn.talking_heads.weight", 3):
        out["num_heads"] = s[0]
    blocks = {int(m.group(1)) for k in state_dict if isinstance(k, str) and (m := re.match(r"block\.(\d+)\.", k))}
    if blocks:
        out["layers"] = max(blocks) + 1
    s = _shape(state_dict, "block.0.mlp.fc1_conv.weight", 4)
    if s and "dim" in out and s[0] % out["dim"] == 0:
        out["mlp_ratio"] = s[0] // out["dim"]
    plif = any(isinstance(k, str) and _PLIF_KEY.search(k) for k in state_dict)
    out["spike_mode"] = "plif" if plif else "lif"
    return out


def _resolve_config(path: Path, parsed: _Parsed, attention: str | None,
                    config: ModelConfig | dict | None) -> ModelConfig:
    notes = parsed.notes
    if isinstance(config, ModelConfig):
        if attention is not None and attention != config.attention:
            notes.append(f"attention {attention!r} set by the caller over config.attention {config.attention!r}")
            config = dataclasses.replace(config, attention=attention)
        notes.append("architecture taken from the config= argument, not from the file")
        bad = config.problems()
        if bad:
            raise CheckpointError(f"{path}: config= is invalid: " + "; ".join(bad))
        return config

    fields = dict(parsed.fields)
    overrides = dict(config or {})
    if attention is not None:
        overrides["attention"] = attention
    if "attention" not in fields and parsed.suggested_attention is not None:
        fields["attention"] = parsed.suggested_attention
        if parsed.attention_note and "attention" not in overrides:
            notes.append(parsed.attention_note)
    notes += [f"{k}={v!r} set by the caller (the file says {fields[k]!r})"
              for k, v in overrides.items() if k in fields and fields[k] != v]
    fields.update(overrides)

    if parsed.source != "snncompile":
        required = _REQUIRED + (("chunk_size",) if fields.get("attention") == "STAtten" else ())
        missing = [f for f in required if f not in fields]
        if missing:
            raise CheckpointError(
                f"{path}: cannot tell the model's {', '.join(missing)} from the "
                f"{'checkpoint args and ' if parsed.source == 'upstream' else ''}weight shapes; pass "
                f"them in config=, e.g. config={{{', '.join(repr(m) + ': ...' for m in missing)}}}")
        for f in _DEFAULTED:
            if f not in fields:
                notes.append(f"{f} not given by the file; assuming {getattr(ModelConfig(), f)}")
    try:
        return model_config_from_dict(fields, where=f"{path}: model config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def _dead_reason(key: str, cfg: ModelConfig) -> str | None:
    for pattern, mode, reason in _DEAD_PARAMETERS:
        if pattern.match(key) and mode in (None, cfg.attention):
            return reason
    return None


def _describe(cfg: ModelConfig) -> str:
    return (f"{cfg.attention} model (dim={cfg.dim}, num_heads={cfg.num_heads}, layers={cfg.layers}, "
            f"mlp_ratio={cfg.mlp_ratio}, in_channels={cfg.in_channels}, num_classes={cfg.num_classes}, "
            f"spike_mode={cfg.spike_mode})")


def _load_weights(path: Path, cfg: ModelConfig, state_dict: dict, strict: bool,
                  notes: list[str]) -> SpikeDrivenTransformer:
    not_tensors = [str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {', '.join(not_tensors)}")
    model = build_model(cfg)
    expected = model.state_dict()
    unexpected = [k for k in state_dict if k not in expected]
    for key in [k for k in unexpected if _dead_reason(k, cfg)]:
        notes.append(f"dropped dead parameter {key} ({_dead_reason(key, cfg)})")
        unexpected.remove(key)
    missing = [k for k in expected if k not in state_dict]
    mismatched = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]

    problems = []
    if missing:
        problems.append("missing keys (in the model, not in the file): " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys (in the file, not in the model): " + ", ".join(unexpected))
        sdt_plif = [k for k in unexpected if k.endswith("_lif.w") and not _PLIF_KEY.search(k)]
        if sdt_plif:
            problems.append("hint: parametric-LIF weights outside the MLP and head "
                            f"({', '.join(sdt_plif[:3])}, ...) come from the Spike-Driven Transformer "
                            "repository's plif mode, where every neuron is parametric; load the file with "
                            "attention='SDT' (--attention SDT)")
    problems += [f"shape mismatch for {k}: model expects {tuple(expected[k].shape)}, file has "
                 f"{tuple(state_dict[k].shape)}" for k in mismatched]
    if problems and strict:
        raise CheckpointError(f"{path}: the weights do not fit the {_describe(cfg)}:\n  - "
                              + "\n  - ".join(problems))
    notes += [f"not loaded (strict=False): {p}" for p in problems]
    model.load_state_dict({k: state_dict[k] for k in expected if k in state_dict and k not in mismatched},
                          strict=False)
    return model.eval()
