"""Child process of tests/test_fuzz_readers.py: reads each file of a manifest with the ``.snnir`` loader or the
checkpoint loader and prints one JSON line per file.

Usage: ``python reader_fuzz_worker.py MANIFEST.json FIRST`` (FIRST: the index to start from, after a hang).

Each line says how the file ended (``ok``, ``refused`` with the project's error and its message, ``crash`` with
any other exception), the paths opened besides the file itself (``open``, ``io.open``, ``os.open``), whether a
loaded array or tensor holds bytes that are not in the file (uninitialised memory), and how far the process's
peak resident memory has grown. A file that runs past the manifest's ``timeout`` ends the process through
faulthandler's watchdog, which fires even while C code holds the GIL; the parent then starts a new one after
that file. The address space is capped a few GiB above start-up, so that a regression allocating without
bound fails here rather than in the machine's swap.
"""
from __future__ import annotations

import builtins
import faulthandler
import hashlib
import io
import json
import os
import resource
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hostile_files import record_bytes, storage_bytes  # noqa: E402

from snncompile.config import ConfigError  # noqa: E402
from snncompile.ir.io import IRFileError, load  # noqa: E402
from snncompile.zoo.checkpoint import CheckpointError, load_checkpoint, read_torch_file  # noqa: E402

OUR_ERRORS = (IRFileError, CheckpointError, ConfigError)


class Opened:
    """The paths this process opens while ``recording`` (every ``open``, ``io.open`` and ``os.open``)."""

    def __init__(self):
        self.paths: list[str] = []
        self.recording = False
        for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
            setattr(module, name, self._recorded(getattr(module, name)))

    def _recorded(self, original):
        def call(file, *args, **kwargs):
            if self.recording and isinstance(file, (str, bytes, os.PathLike)):
                self.paths.append(os.path.abspath(os.fsdecode(file)))
            return original(file, *args, **kwargs)
        return call


def snnir_arrays_not_in_file(graph, path: str) -> list[str]:
    """Arrays of a loaded graph whose bytes are none of the file's arrays (by the manifest's sha256)."""
    with zipfile.ZipFile(path) as zf:
        stored = {meta["sha256"] for meta in json.loads(zf.read("graph.json"))["arrays"].values()}
    return [f"{name}.{field}" for name, node in graph.nodes.items() for field, a in node.op.arrays().items()
            if hashlib.sha256(a.tobytes()).hexdigest() not in stored]


def read(entry: dict, opened: Opened) -> dict:
    path, foreign = entry["path"], []
    opened.recording = True
    try:
        if entry["kind"] == "snnir":
            graph = load(path)
            opened.recording = False
            foreign = snnir_arrays_not_in_file(graph, path)
        else:
            tensors = read_torch_file(path)  # what load_checkpoint copies the model's weights from
            opened.recording = False
            foreign = [len(b) for b in set(storage_bytes(tensors)) - record_bytes(path)]
            opened.recording = True
            load_checkpoint(path, config=entry.get("config"))
    except OUR_ERRORS as e:
        return {"outcome": "refused", "type": type(e).__name__, "message": str(e), "uninitialised": foreign}
    except Exception as e:  # noqa: BLE001 - the fuzz test counts every other exception as a failure
        return {"outcome": "crash", "type": type(e).__name__, "message": str(e)[:300], "uninitialised": foreign}
    finally:
        opened.recording = False
    return {"outcome": "ok", "uninitialised": foreign}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(manifest_path: str, first: int) -> None:
    manifest = json.loads(Path(manifest_path).read_text())
    files = manifest["files"]
    opened = Opened()
    for kind in ("snnir", "checkpoint"):  # warm-up: lazy imports and first-call allocations
        read(next(f for f in manifest["seeds"] if f["kind"] == kind), opened)
    opened.paths.clear()
    base = peak_rss()
    vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 4 * manifest["memory_cap"], resource.getrlimit(resource.RLIMIT_AS)[1]))
    for index in range(first, len(files)):
        entry = files[index]
        print(json.dumps({"start": index}), flush=True)
        faulthandler.dump_traceback_later(manifest["timeout"], exit=True)
        result = read(entry, opened)
        faulthandler.cancel_dump_traceback_later()
        result.update(index=index, rss_growth=peak_rss() - base,
                      opened=sorted({p for p in opened.paths if p != os.path.abspath(entry["path"])}))
        opened.paths.clear()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
