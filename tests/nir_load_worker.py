"""Child process of tests/test_hostile_nir.py's fuzz test: imports each NIR file of a manifest with ``from_nir`` and
prints one JSON line per file: how it ended (``ok``, ``refused`` with the NIRImportError's message, or ``crash``
with any other exception), the files opened besides the input (Python's ``open``/``os.open``/``h5py.File``, and
through inotify any open of a bait file, which also sees the HDF5 C library's own opens), whether a loaded graph
holds bait bytes, and the process's peak resident memory.

Usage: ``python nir_load_worker.py MANIFEST.json FIRST`` (FIRST: the index to start from, after a hang).
The address space is capped at the size after start-up plus the manifest's ``memory_cap`` plus a margin, so a
file that allocates without bound ends as a MemoryError here rather than in the machine's swap.
"""
from __future__ import annotations

import builtins
import ctypes
import json
import os
import resource
import sys
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).parent))
from nir_mutations import secret_in  # noqa: E402

from snncompile.frontend.nir_import import NIRImportError, from_nir  # noqa: E402

IN_OPEN, IN_ACCESS = 0x20, 0x01


def watch(folder: Path) -> int:
    """An inotify descriptor that sees every open and read of a file in ``folder`` (by any code, C included)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(folder), IN_OPEN | IN_ACCESS) < 0:
        raise OSError(ctypes.get_errno(), "inotify unavailable")
    return fd


def touched(fd: int) -> bool:
    try:
        return bool(os.read(fd, 65536))
    except BlockingIOError:
        return False


class OpenLog:
    """Records the path of every ``open``, ``os.open`` and ``h5py.File`` call of this process."""

    def __init__(self):
        self.paths: list[str] = []
        self._open, self._os_open, self._h5_init = builtins.open, os.open, h5py.File.__init__
        log = self

        def recorded(original):
            def call(file, *args, **kwargs):
                if isinstance(file, (str, bytes, os.PathLike)):
                    log.paths.append(os.fsdecode(file))
                return original(file, *args, **kwargs)
            return call

        def h5_init(self_, name, *args, **kwargs):
            if isinstance(name, (str, bytes, os.PathLike)):
                log.paths.append(os.fsdecode(name))
            return log._h5_init(self_, name, *args, **kwargs)

        builtins.open, os.open, h5py.File.__init__ = recorded(self._open), recorded(self._os_open), h5_init

    def take(self) -> list[str]:
        paths, self.paths = self.paths, []
        return paths


def load(path: str, dt: float) -> dict:
    try:
        graph = from_nir(path, time_steps=2, dt=dt)
    except NIRImportError as e:
        return {"outcome": "refused", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - the fuzz test counts every other exception as a failure
        return {"outcome": "crash", "type": type(e).__name__, "message": str(e)[:300]}
    leaked = [n for n, node in graph.nodes.items() for a in node.op.arrays().values() if secret_in(a)]
    return {"outcome": "ok", "leaked": leaked}


def main(manifest_path: str, first: int) -> None:
    manifest = json.loads(Path(manifest_path).read_text())
    files = manifest["files"]
    load(files[0]["path"], files[0]["dt"])  # warm-up: lazy imports open their own files
    inotify = watch(Path(manifest["bait"]))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    limit = vm + manifest["memory_cap"] + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    log = OpenLog()
    for i in range(first, len(files)):
        entry = files[i]
        print(json.dumps({"start": i}), flush=True)
        t = time.perf_counter()
        result = load(entry["path"], entry["dt"])
        result.update(index=i, seconds=time.perf_counter() - t,
                      opened=[p for p in log.take() if os.path.abspath(p) != os.path.abspath(entry["path"])],
                      bait_touched=touched(inotify),
                      rss_growth=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
