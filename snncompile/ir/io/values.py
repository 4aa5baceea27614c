"""``.snnir`` values: the tagged JSON encoding of field and option values, and the field type checks."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
import weakref
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from ...config import is_int
from .. import io as ir_io  # the package: its constants are read at call time, so they can be patched
from ..ops.base import frozen_array
from ..types import DType

_ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex
_TAGS = ("float", "list", "dict", "dtype", "array")
_TIME_LAYOUTS = ("stream", "static")


class IRFileError(ValueError):
    """A ``.snnir`` file cannot be read or written; the message names the file and the problem."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class _Problem(Exception):
    """Internal: a problem without the file name; the public functions turn it into IRFileError."""


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` in C order, keeping 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C", copy=True)


#: id -> sha256 of a node's parameter array (:func:`~snncompile.ir.ops.base.frozen_array`), dropped when the array
#: is: the pipeline digests the graph after every pass, and most arrays pass through unchanged
_FROZEN_SHA256: dict[int, str] = {}


def _bytes_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(_c_order(a).reshape(-1).view(np.uint8)).hexdigest()


def _array_sha256(a: np.ndarray) -> str:
    """The sha256 of the array's raw bytes in C order, hashed in place (no copy of a C-ordered array), once
    for an array whose bytes never change."""
    if not frozen_array(a):
        return _bytes_sha256(a)
    key = id(a)
    if key not in _FROZEN_SHA256:
        _FROZEN_SHA256[key] = _bytes_sha256(a)
        weakref.finalize(a, _FROZEN_SHA256.pop, key, None)
    return _FROZEN_SHA256[key]


def _check_array_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype:
        raise _Problem(f"{where}: array dtype {dtype.str!r} ({dtype}) is not allowed "
                       f"(only bool, int, uint, float and complex; never object or structured)")


def parse_dtype(text: Any, where: str) -> DType:
    """The DType a file names, refusing widths over ``MAX_DTYPE_BITS`` (``DType.min``/``max`` are powers
    of two of the width: a width of 10**11 would never finish)."""
    if not isinstance(text, str):
        raise _Problem(f"{where}: dtype must be a string such as 'float32', 'spike' or 'uint5', got {_short(text)}")
    try:
        dtype = DType.parse(text)
    except ValueError as e:
        raise _Problem(f"{where}: {e}") from None
    if dtype.bits > ir_io.MAX_DTYPE_BITS:
        raise _Problem(f"{where}: dtype {_short(text)} is wider than the limit of {ir_io.MAX_DTYPE_BITS} bits")
    return dtype


def _encode(value: Any, where: str, array_ref: Callable[[np.ndarray], Any] | None) -> Any:
    """``value`` as tagged JSON; ``array_ref`` encodes a field-level array (``None``: arrays refused)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, tuple):
        return [_encode(v, f"{where}[{i}]", None) for i, v in enumerate(value)]
    if isinstance(value, list):
        return {"list": [_encode(v, f"{where}[{i}]", None) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise _Problem(f"{where}: dict keys must be strings, got {bad[0]!r}")
        return {"dict": {k: _encode(v, f"{where}[{k!r}]", None) for k, v in value.items()}}
    if isinstance(value, DType):
        text = str(value)
        try:
            same = DType.parse(text) == value
        except ValueError:
            same = False
        if not same:
            raise _Problem(f"{where}: {value!r} has no string form that reads back as itself")
        return {"dtype": text}
    if isinstance(value, np.ndarray):
        if array_ref is None:
            raise _Problem(f"{where}: arrays are allowed only as the direct value of a node field")
        _check_array_dtype(value.dtype, where)
        return {"array": array_ref(value)}
    raise _Problem(f"{where}: cannot store a value of type {type(value).__module__}.{type(value).__qualname__} "
                   f"({value!r}); fields hold None, bool, int, float, str, tuples, DType or numpy arrays")


def _decode(j: Any, where: str, array_get: Callable[[str], np.ndarray] | None) -> Any:
    if j is None or isinstance(j, (bool, int, str)):
        return j
    if isinstance(j, float):
        return j
    if isinstance(j, list):
        return tuple(_decode(v, f"{where}[{i}]", None) for i, v in enumerate(j))
    if isinstance(j, dict):
        if len(j) != 1 or next(iter(j)) not in _TAGS:
            raise _Problem(f"{where}: unknown value encoding {_short(j)} (a one-key object tagged "
                           f"{', '.join(_TAGS)})")
        tag, body = next(iter(j.items()))
        if tag == "float":
            if body not in ("inf", "-inf", "nan"):
                raise _Problem(f"{where}: {{'float': ...}} must be 'inf', '-inf' or 'nan', got {_short(body)}")
            return float(body)
        if tag == "list":
            if not isinstance(body, list):
                raise _Problem(f"{where}: {{'list': ...}} needs a JSON array, got {_short(body)}")
            return [_decode(v, f"{where}[{i}]", None) for i, v in enumerate(body)]
        if tag == "dict":
            if not isinstance(body, dict):
                raise _Problem(f"{where}: {{'dict': ...}} needs a JSON object, got {_short(body)}")
            return {k: _decode(v, f"{where}[{k!r}]", None) for k, v in body.items()}
        if tag == "dtype":
            if not isinstance(body, str):
                raise _Problem(f"{where}: {{'dtype': ...}} needs a string, got {_short(body)}")
            return parse_dtype(body, where)
        if array_get is None:
            raise _Problem(f"{where}: arrays are allowed only as the direct value of a node field")
        if not isinstance(body, str):
            raise _Problem(f"{where}: {{'array': ...}} needs an entry name, got {_short(body)}")
        return array_get(body)
    raise _Problem(f"{where}: unexpected JSON value {_short(j)}")  # pragma: no cover (json gives no other)


def _short(j: Any, limit: int = 80) -> str:
    text = repr(j)
    return text if len(text) <= limit else text[:limit] + "..."


# -- field type annotations: checked on save and on load, generically ----------------------------

@lru_cache(maxsize=None)
def _field_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``cls``'s fields (``{}`` for any that cannot be resolved)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation: the value check is skipped for that class
        return {}


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, h) for h in args)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if args == ((),):
            return value == ()
        return not args or (len(value) == len(args) and all(_matches(v, h) for v, h in zip(value, args)))
    if hint is type(None) or hint is None:
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if origin is not None and isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation form this check does not know: accept


def _hint_text(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("numpy.", "np.")


def _check_field(cls: type, field: str, value: Any, where: str) -> None:
    hint = _field_hints(cls).get(field)
    if hint is not None and not _matches(value, hint):
        raise _Problem(f"{where}: expected {_hint_text(hint)}, got {type(value).__name__} {_short(value)}")


def _where(name: str, op_type: str, field: str | None = None) -> str:
    return f"node {name!r} ({op_type})" + (f" field {field!r}" if field else "")



def _keys(obj: Any, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(obj, dict):
        raise _Problem(f"{what} must be a JSON object, got {_short(obj)}")
    missing = [k for k in keys if k not in obj]
    unknown = [k for k in obj if k not in keys]
    if missing or unknown:
        raise _Problem(f"{what}: " + "; ".join(
            ([f"missing key(s) {', '.join(map(repr, missing))}"] if missing else [])
            + ([f"unknown key(s) {', '.join(map(repr, unknown))}"] if unknown else [])))
    return obj


