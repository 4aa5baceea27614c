"""Fuzzing the two readers of untrusted files (issue 15): seeded mutations of ``.snnir`` files and crafted torch
checkpoints, each read in a child process (tests/reader_fuzz_worker.py) with a per-file timeout. Every file must
end in the project's own error (IRFileError, CheckpointError, ConfigError) naming it, or in a correct load; no
other exception, no hang, no growth of peak memory over MEMORY_CAP, no file opened besides the input, and no
loaded array or tensor holding bytes that are not in the file."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reader_mutations import SNNIR_MUTATIONS, checkpoint_mutations
from snncompile.ir.io import to_bytes
from snncompile.zoo.checkpoint import read_torch_file, save_checkpoint
from test_ir_io import every_op_graph, lowered_graph
from upstream_files import small_cfg, trained_like, upstream_args, write_upstream

SNNIR_FILES = 1000
CHECKPOINT_FILES = 240
PER_FILE_TIMEOUT = 20        # seconds; a file takes 3-150 ms (on two busy cores)
MEMORY_CAP = 512 * 1024 ** 2  # growth of the worker's peak resident memory, over every file
SEED = 15
STATE_DICT_CONFIG = {"attention": "STAtten", "img_size": 16, "time_steps": 4, "pooling_stat": "0011"}


def seed_files(folder: Path) -> list[dict]:
    """The files the mutations start from: .snnir of every op type, of an integer-lowered graph (version 3 with
    its schedule and scales) and of version 1; an upstream timm checkpoint, one of ours, a bare state_dict."""
    folder.mkdir()
    model = trained_like(small_cfg(layers=1))
    (folder / "every_op.snnir").write_bytes(to_bytes(every_op_graph()))
    (folder / "lowered.snnir").write_bytes(to_bytes(lowered_graph()))
    (folder / "format_v1.snnir").write_bytes((Path(__file__).parent / "data" / "format_v1.snnir").read_bytes())
    write_upstream(folder / "upstream.pth", model, upstream_args(layer=1))
    save_checkpoint(folder / "ours.pth", model, metrics={"top1": 0.5})
    torch.save(model.state_dict(), folder / "state_dict.pth")
    return [{"path": str(p), "kind": "snnir" if p.suffix == ".snnir" else "checkpoint",
             "config": STATE_DICT_CONFIG if p.name == "state_dict.pth" else None}
            for p in sorted(folder.iterdir())]


def mutated_files(folder: Path, seeds: list[dict]) -> list[dict]:
    """SNNIR_FILES and CHECKPOINT_FILES files, each seed and each mutation in turn, each file from its own
    seeded generator (file i can be made again alone)."""
    def read(data: bytes):
        scratch = folder / "scratch.pth"
        scratch.write_bytes(data)
        return read_torch_file(scratch)

    files = []
    for kind, count, mutations in (("snnir", SNNIR_FILES, SNNIR_MUTATIONS),
                                   ("checkpoint", CHECKPOINT_FILES, checkpoint_mutations(read))):
        sources = [s for s in seeds if s["kind"] == kind]
        for i in range(count):
            source, mutation = sources[i % len(sources)], mutations[i % len(mutations)]
            data, what = mutation(random.Random(f"{SEED}/{kind}/{i}"), Path(source["path"]).read_bytes())
            path = folder / f"{kind}-{i:04d}{Path(source['path']).suffix}"
            path.write_bytes(data)
            files.append({**source, "path": str(path), "mutation": f"{Path(source['path']).name}: "
                                                                  f"{mutation.__name__}: {what}"})
    return files


def run_worker(manifest_path: Path, count: int) -> tuple[list[dict], list[int]]:
    """Every file's record from the worker, starting a new worker after a file that hangs; and the hangs."""
    results, hangs, first = [], [], 0
    while first < count:
        done = subprocess.run([sys.executable, str(Path(__file__).parent / "reader_fuzz_worker.py"),
                               str(manifest_path), str(first)], capture_output=True, text=True, timeout=900)
        records = [json.loads(line) for line in done.stdout.splitlines()]
        results += [r for r in records if "outcome" in r]
        started = [r["start"] for r in records if "start" in r]
        if done.returncode == 0:
            assert started and started[-1] == count - 1, done.stderr[-2000:]
            break
        assert started and (not results or results[-1]["index"] < started[-1]), \
            f"the fuzz worker failed outside a file:\n{done.stderr[-2000:]}"
        hangs.append(started[-1])  # faulthandler's watchdog ended it
        first = started[-1] + 1
    return results, hangs


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mutated_snnir_files_and_crafted_checkpoints_end_in_our_error_or_load(tmp_path):
    files = mutated_files(tmp_path, seeds := seed_files(tmp_path / "seeds"))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"seeds": seeds, "files": files, "timeout": PER_FILE_TIMEOUT,
                                    "memory_cap": MEMORY_CAP}))
    started = time.monotonic()
    results, hangs = run_worker(manifest, len(files))
    elapsed = time.monotonic() - started

    def named(r: dict) -> str:
        return f"{Path(files[r['index']]['path']).name} ({files[r['index']]['mutation']})"

    outcomes = {(kind, outcome): sum(files[r["index"]]["kind"] == kind and r["outcome"] == outcome for r in results)
                for kind in ("snnir", "checkpoint") for outcome in ("ok", "refused", "crash")}
    print(f"{len(results)} files in {elapsed:.1f} s: {outcomes}, {len(hangs)} hangs, peak memory growth "
          f"{max(r['rss_growth'] for r in results) / 2 ** 20:.0f} MiB")
    crashes = [f"{named(r)}: {r['type']}: {r['message']}" for r in results if r["outcome"] == "crash"]
    assert not crashes, f"{len(crashes)} of {len(results)} files end in another exception:\n" + "\n".join(crashes)
    assert not hangs, [named({"index": i}) for i in hangs]
    assert len(results) == len(files) and SNNIR_FILES >= 1000 and CHECKPOINT_FILES >= 200
    # the first line names the file; a message goes on only to list a graph's or a model's problems
    unclear = [f"{named(r)}: {r['message'][:300]!r}" for r in results if r["outcome"] == "refused"
               and (files[r["index"]]["path"] not in r["message"].split("\n")[0]
                    or any(not line.startswith("  - ") for line in r["message"].split("\n")[1:]))]
    assert not unclear, "messages that do not name the file in one line:\n" + "\n".join(unclear)
    assert not [f"{named(r)}: {r['opened']}" for r in results if r["opened"]], "files opened besides the input"
    assert not [f"{named(r)}: {r['uninitialised']}" for r in results if r["uninitialised"]], \
        "loaded arrays or tensors with bytes that are not in the file"
    assert max(r["rss_growth"] for r in results) <= MEMORY_CAP
    assert all(outcomes[kind, outcome] >= 20 for kind in ("snnir", "checkpoint") for outcome in ("ok", "refused"))
