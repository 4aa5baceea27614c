"""Lava sessions in isolation: bounded in time, always stopped, nothing left behind.

Both Lava runs of this package go through here: the backend's own network (:mod:`.runner`) and lava-dl netx
networks (:mod:`.netx_run`).

:func:`run_isolated` runs a session function in a forked child process that leads its own process group; Lava
forks all its processes (one per Process, plus its runtime service and shared memory manager) from that child,
so they are all in the group. The parent waits for the child's answer at most ``timeout`` seconds; then,
whatever happened (an answer, an error, a timeout, a crash), it kills what is left of the group and removes
the shared-memory segments its processes still held (a killed Lava cannot unlink them). Running Lava in a
child also keeps Lava's forking away from the caller's threads. In the child, a session stops its runtime
whatever happens (:func:`stopped`).

Importing this module imports neither Lava nor anything that does; :func:`import_lava` imports Lava modules
into the parent (once, for every child to inherit) without tripping over multiprocessing's start method.
Lava's compiler executes this file on its own (it sits beside the backend's Process definitions): absolute
imports only, no side effects at import.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

DEFAULT_TIMEOUT = 600.0
# importing it calls multiprocessing.set_start_method('fork') (see import_lava)
_LAVA_START_METHOD_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


class LavaBackendError(ValueError):
    """The graph cannot be run on the Lava backend, or a Lava run failed; the message names the node."""


class LavaTimeoutError(LavaBackendError):
    """A Lava run exceeded its timeout; its processes were killed. ``pgid``: their process group."""

    pgid: int = 0


# -- processes -----------------------------------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgid)`` of a process, or ``None`` where it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, grandchildren, ...), zombies included."""
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        stat = _proc_stat(p)
        if stat:
            children.setdefault(stat[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def group_members(pgid: int) -> list[int]:
    """The running processes of process group ``pgid`` (zombies, already ended, are left out)."""
    members = []
    for p in _all_pids():
        stat = _proc_stat(p)
        if stat and stat[2] == pgid and stat[0] != "Z":
            members.append(p)
    return members


def _shared_memory_of(pids: list[int]) -> set[str]:
    """The ``/dev/shm`` files the processes ``pids`` have mapped."""
    found = set()
    for p in pids:
        try:
            maps = Path(f"/proc/{p}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
            if path.startswith("/dev/shm/"):
                found.add(path.removesuffix(" (deleted)"))
    return found


def end_group(pgid: int, grace: float = 0.0) -> tuple[int, frozenset[str]]:
    """Kill whatever of process group ``pgid`` (ours: the child's) still runs after ``grace`` seconds and unlink
    the shared memory those processes held; returns how many there were and the files unlinked."""
    members = group_members(pgid)
    deadline = time.monotonic() + grace
    while members and time.monotonic() < deadline:
        time.sleep(0.02)
        members = group_members(pgid)
    if not members:
        return 0, frozenset()
    segments = _shared_memory_of(members)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 5.0
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in segments:
        try:
            os.unlink(path)
        except OSError:
            pass
    return len(members), frozenset(segments)


# -- isolation -----------------------------------------------------------------------------------------------------

def _child_main(conn, fn: Callable, args: tuple) -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    try:
        # Lava's processes need fork, whatever start method the parent has: Lava's own setting first (its first
        # import would fail after ours), then ours
        import_lava()
        multiprocessing.set_start_method("fork", force=True)
        torch.set_num_threads(1)  # one core per Lava process; they run side by side
        message = ("ok", fn(*args))
    except BaseException as e:  # noqa: BLE001 -- everything goes back to the parent
        message = ("error", f"{type(e).__name__}: {e}", traceback.format_exc())
    try:
        conn.send(message)
        conn.close()
    finally:
        os._exit(0)  # no atexit handlers, no joining of Lava's processes: the parent ends the group


def run_isolated(fn: Callable, *args, timeout: float, what: str = "Lava run", grace: float = 0.0,
                 cleanup: dict | None = None) -> tuple[Any, int]:
    """``fn(*args)`` in a forked child leading its own process group, within ``timeout`` seconds; returns its
    result (sent back pickled) and the group id. Afterwards no process of the group is left (see the module
    docstring): what still runs ``grace`` seconds after the child's answer is killed. Raises
    :class:`LavaTimeoutError` on timeout and :class:`LavaBackendError` with the child's traceback on an error.
    ``cleanup``: a dict that receives, also when this raises, ``pgid``, ``stragglers`` (how many processes of
    the group were killed) and ``segments`` (the shared-memory files they held, unlinked). A dict result gets
    ``timings["total"]``: seconds from the child's start to its answer."""
    ctx = multiprocessing.get_context("fork")  # Lava itself needs fork; no global start method is set here
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(send, fn, args), daemon=False)
    start = time.monotonic()
    child.start()
    pgid = child.pid
    try:
        os.setpgid(pgid, pgid)  # also from here: the group exists before the first wait
    except OSError:
        pass
    send.close()
    try:
        if not receive.poll(timeout):
            error = LavaTimeoutError(f"{what} exceeded its timeout of {timeout:g} s; its processes were stopped")
            error.pgid = pgid
            raise error
        try:
            message = receive.recv()
        except EOFError:
            child.join(5)
            raise LavaBackendError(f"{what}: the child process died (exit code {child.exitcode})") from None
    finally:
        child.join(1.0)  # it exits right after answering
        stragglers, segments = end_group(pgid, 0.0 if child.is_alive() else grace)
        child.join(5.0)
        receive.close()
        if cleanup is not None:
            cleanup.update(pgid=pgid, stragglers=stragglers, segments=segments)
    if message[0] != "ok":
        raise LavaBackendError(f"{what} failed: {message[1]}\n--- in the Lava child process ---\n{message[2]}")
    result = message[1]
    if isinstance(result, dict):
        result.setdefault("timings", {})["total"] = time.monotonic() - start
    return result, pgid


# -- Lava in the parent and in the child ---------------------------------------------------------------------------

def import_lava(*modules: str) -> None:
    """Import the Lava ``modules`` into this process, for every later child to inherit.

    Lava's first import calls ``multiprocessing.set_start_method('fork')``, which fails where a start method
    is set and fixes one where none is: that import happens with none set, and this process's own start method
    (none included) is put back after. The child sets ``fork`` itself (:func:`run_isolated`)."""
    method = multiprocessing.get_start_method(allow_none=True)
    if _LAVA_START_METHOD_MODULE not in modules:
        modules = (_LAVA_START_METHOD_MODULE, *modules)
    multiprocessing.set_start_method(None, force=True)
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        multiprocessing.set_start_method(method, force=True)


def fixed_pt_config():
    """Lava's bit-accurate CPU simulation (``Loihi2SimCfg(select_tag="fixed_pt")``), its extractors on their
    Loihi-protocol model, stepped with the network (Lava also has an asynchronous one)."""
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Extractor: PyLoihiExtractorModel})


#: messages a Lava channel holds (Lava's default: 64). Each connection's channel is shared memory of that many
#: messages, touched in turn step after step; under the Loihi protocol a reader takes each step's message in
#: that step, so a channel never holds more than one (64 made ImageNet's 13 MB image message 0.8 GB)
CHANNEL_SLOTS = 4


def compile_config() -> dict:
    """Lava's compiler options for the backend's networks: channels of :data:`CHANNEL_SLOTS` messages."""
    return {"pypy_channel_size": CHANNEL_SLOTS}


@contextmanager
def stopped(process, timings: dict, key: str = "stop") -> Iterator[None]:
    """Stop ``process``'s runtime on leaving the block, whatever happened in it; ``timings[key]``: seconds."""
    try:
        yield
    finally:
        t = time.perf_counter()
        process.stop()
        timings[key] = time.perf_counter() - t


__all__ = ["run_isolated", "end_group", "descendants", "group_members", "import_lava", "fixed_pt_config",
           "compile_config", "CHANNEL_SLOTS", "stopped",
           "LavaBackendError", "LavaTimeoutError", "DEFAULT_TIMEOUT"]
