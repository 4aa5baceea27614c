"""Checkpoint reading and writing: our format, upstream timm files, bare state dicts, hostile files."""
from __future__ import annotations

import argparse
import builtins
import dataclasses
import os
import pickle
import re
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from snncompile.nn.backbones import build_model
from snncompile.zoo.checkpoint import (CheckpointError, LoadedCheckpoint, load_checkpoint,
                                       read_torch_file, save_checkpoint)
from snncompile.config import ModelConfig
from upstream_files import DROP, small_cfg, trained_like, upstream_args, write_upstream


def assert_same_weights(loaded: LoadedCheckpoint, model):
    got, want = loaded.model.state_dict(), model.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def write_zip(path, records: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records.items():
            zf.writestr(name, data)
    return path


def zip_records(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# -- our format ---------------------------------------------------------------------------------

def test_round_trip_is_bit_exact(tmp_path):
    cfg = small_cfg(attention="STAtten", spike_mode="plif")
    model = trained_like(cfg)
    path = save_checkpoint(tmp_path / "m.pt", model, name="tiny", metrics={"top1": np.float32(0.5)},
                           extra={"epochs": 3, "history": [0.1, 0.2]})
    loaded = load_checkpoint(path)
    assert loaded.source == "snncompile" and loaded.name == "tiny" and loaded.config == cfg
    assert loaded.metrics == {"top1": 0.5} and type(loaded.metrics["top1"]) is float
    assert loaded.extra == {"epochs": 3, "history": [0.1, 0.2]}
    assert not loaded.model.training and loaded.path == path and loaded.notes == []
    assert_same_weights(loaded, model)
    with torch.no_grad():
        x = torch.rand(2, 3, 16, 16)
        assert torch.equal(loaded.model(x), model(x))
    assert not list(tmp_path.glob("*.partial"))


def test_round_trip_file_holds_only_plain_types(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(small_cfg()))
    payload = torch.load(path, weights_only=True)  # torch's own allowlist: no classes at all
    assert payload["format"] == "snncompile-checkpoint" and payload["format_version"] == 1
    assert payload["config"] == dataclasses.asdict(small_cfg())
    assert set(payload) == {"format", "format_version", "name", "config", "state_dict", "metrics", "extra"}


def test_save_refuses_non_plain_metrics(tmp_path):
    with pytest.raises(TypeError, match=r"metrics\['bad'\]"):
        save_checkpoint(tmp_path / "m.pt", build_model(small_cfg()), metrics={"bad": object()})
    assert not list(tmp_path.iterdir())


def test_config_override_on_our_format(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", trained_like(small_cfg()))
    loaded = load_checkpoint(path, config={"time_steps": 8}, attention="SDT")
    assert loaded.config.time_steps == 8 and loaded.config.attention == "SDT"
    assert any("time_steps=8" in n for n in loaded.notes)
    assert any("'SDT' set by the caller" in n for n in loaded.notes)


def test_unknown_format_version(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": "snncompile-checkpoint", "format_version": 7, "config": {},
                "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"future\.pt.*format_version 7.*version 1"):
        load_checkpoint(path)


def test_invalid_embedded_config_names_file_and_field(tmp_path):
    path = tmp_path / "bad.pt"
    cfg = dataclasses.asdict(small_cfg())
    cfg["dim"] = 30
    torch.save({"format": "snncompile-checkpoint", "format_version": 1, "config": cfg,
                "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*dim: 30"):
        load_checkpoint(path)


# -- the reader ---------------------------------------------------------------------------------

def test_reader_rebuilds_shared_storages_offsets_and_dtypes(tmp_path):
    base = torch.arange(12.0)
    obj = {
        "base": base, "strided": base[2:10:3], "transposed": base.view(3, 4).t(), "scalar": base[5],
        "half": torch.randn(3).half(), "bf16": torch.randn(2, 2).bfloat16(), "long": torch.arange(4),
        "bool": torch.tensor([True, False]), "int8": torch.tensor([-3, 4], dtype=torch.int8),
        "f64": torch.randn(2, dtype=torch.float64), "empty": torch.empty(0, 3),
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "t.pth"
    torch.save(obj, path)
    ours, torchs = read_torch_file(path), torch.load(path, weights_only=True)
    for k in obj:
        assert ours[k].dtype == torchs[k].dtype and ours[k].shape == torchs[k].shape, k
        assert ours[k].stride() == torchs[k].stride() and torch.equal(ours[k], torchs[k]), k
    assert isinstance(ours["param"], torch.nn.Parameter) and ours["param"].requires_grad
    ptr = ours["base"].untyped_storage().data_ptr()
    assert all(ours[k].untyped_storage().data_ptr() == ptr for k in ("strided", "transposed", "scalar"))
    assert ours["strided"].storage_offset() == 2


def test_reader_returns_namespace_and_numpy_scalars(tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"args": argparse.Namespace(dim=32, name="x"), "metric": np.float64(1.25),
                "count": np.int64(3)}, path)
    got = read_torch_file(path)
    assert isinstance(got["args"], argparse.Namespace) and vars(got["args"]) == {"dim": 32, "name": "x"}
    assert got["metric"] == 1.25 and got["count"] == 3
    assert pickle.loads(pickle.dumps(got["args"])) == argparse.Namespace(dim=32, name="x")


def test_reader_byteswaps_big_endian_files(tmp_path):
    src = tmp_path / "little.pth"
    torch.save({"x": torch.arange(5, dtype=torch.float32)}, src)
    records = zip_records(src)
    (prefix,) = {n.split("/")[0] for n in records}
    records[f"{prefix}/byteorder"] = b"big"
    records[f"{prefix}/data/0"] = np.frombuffer(records[f"{prefix}/data/0"], "<f4").astype(">f4").tobytes()
    got = read_torch_file(write_zip(tmp_path / "big.pth", records))
    assert torch.equal(got["x"], torch.arange(5, dtype=torch.float32))


# -- upstream timm checkpoints --------------------------------------------------------------------

@pytest.mark.parametrize("module_prefix", [False, True])
def test_upstream_statten_checkpoint(tmp_path, module_prefix):
    cfg = small_cfg(img_size=32)
    model = trained_like(cfg)
    path = write_upstream(tmp_path / "model_best.pth.tar", model, upstream_args(),
                          module_prefix=module_prefix, ema=True)
    loaded = load_checkpoint(path)
    assert loaded.source == "upstream" and loaded.config == cfg
    assert loaded.metrics == {"epoch": 199, "metric": 93.25, "eval_metric": "top1"}
    assert_same_weights(loaded, model)
    if not module_prefix:  # one forward pass is enough: the weights are already compared bit-exactly
        with torch.no_grad():
            x = torch.rand(1, 3, 32, 32)
            assert torch.equal(loaded.model(x), model(x))
    assert any("state_dict_ema" in n for n in loaded.notes)
    assert any("'module.'" in n for n in loaded.notes) == module_prefix
    assert not any("attention" in n for n in loaded.notes)


def test_upstream_attention_override(tmp_path):
    path = write_upstream(tmp_path / "c.pth", trained_like(small_cfg(img_size=32)), upstream_args())
    loaded = load_checkpoint(path, attention="SDT")
    assert loaded.config.attention == "SDT"
    assert any("'SDT' set by the caller" in n and "'STAtten'" in n for n in loaded.notes)


def test_upstream_attention_mode_in_args_is_ignored_like_statten_train_py(tmp_path):
    path = write_upstream(tmp_path / "c.pth", trained_like(small_cfg(img_size=32)),
                          upstream_args(attention_mode="SDT"))
    loaded = load_checkpoint(path)
    assert loaded.config.attention == "STAtten"
    assert any("attention_mode 'SDT' in args is ignored" in n for n in loaded.notes)


def test_upstream_without_attention_mode_is_spike_driven_transformer(tmp_path):
    cfg = small_cfg(img_size=32, attention="SDT")
    model = trained_like(cfg)
    path = write_upstream(tmp_path / "sdt.pth", model,
                          upstream_args(attention_mode=DROP, chunk_size=DROP, time_steps=2))
    loaded = load_checkpoint(path)
    assert loaded.config.attention == "SDT" and loaded.config.time_steps == 2
    assert any("no attention_mode" in n for n in loaded.notes)
    assert_same_weights(loaded, model)


@pytest.mark.parametrize("spike_mode_in_args", [True, False])
def test_upstream_plif_keys_load(tmp_path, spike_mode_in_args):
    cfg = small_cfg(img_size=32, spike_mode="plif")
    model = trained_like(cfg)
    args = upstream_args(spike_mode="plif" if spike_mode_in_args else DROP)
    loaded = load_checkpoint(write_upstream(tmp_path / "p.pth", model, args))
    assert loaded.config.spike_mode == "plif"
    for key in ("block.0.mlp.fc1_lif.w", "block.1.mlp.fc2_lif.w", "head_lif.w"):
        assert torch.equal(loaded.model.state_dict()[key], model.state_dict()[key])


def test_upstream_dvs_mode_derived_from_dataset(tmp_path):
    cfg = small_cfg(img_size=32, in_channels=2, dvs_mode=True)
    path = write_upstream(tmp_path / "dvs.pth", trained_like(cfg),
                          upstream_args(dvs_mode=DROP, in_channels=2, dataset="cifar10-dvs"))
    loaded = load_checkpoint(path)
    assert loaded.config.dvs_mode is True
    assert any("derived from args.dataset 'cifar10-dvs'" in n for n in loaded.notes)


def test_upstream_missing_args_fields_inferred_or_listed(tmp_path):
    cfg = small_cfg(img_size=32, num_classes=7, layers=3)
    model = trained_like(cfg)
    drop = {k: DROP for k in ("dim", "num_heads", "num_classes", "layer", "mlp_ratio", "in_channels",
                               "img_size", "time_steps")}
    path = write_upstream(tmp_path / "sparse.pth", model, upstream_args(**drop))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    # dim, num_heads, ... come from the weight shapes; only what they cannot tell is asked for
    assert "sparse.pth" in msg
    assert re.search(r"cannot tell the model's (.*?) from", msg).group(1) == "img_size, time_steps"
    loaded = load_checkpoint(path, config={"img_size": 32, "time_steps": 4})
    assert loaded.config == cfg
    assert_same_weights(loaded, model)


def test_upstream_config_overrides_win_over_args(tmp_path):
    path = write_upstream(tmp_path / "c.pth", trained_like(small_cfg(img_size=32)), upstream_args())
    loaded = load_checkpoint(path, config={"time_steps": 6, "chunk_size": 3})
    assert (loaded.config.time_steps, loaded.config.chunk_size) == (6, 3)


def test_dead_upstream_parameter_dropped_with_note(tmp_path):
    model = trained_like(small_cfg())
    sd = dict(model.state_dict())
    sd["patch_embed.rpe_lif.w"] = torch.tensor(0.0)
    path = tmp_path / "sd.pth"
    torch.save(sd, path)
    loaded = load_checkpoint(path, config=small_cfg())
    assert any("dropped dead parameter patch_embed.rpe_lif.w" in n for n in loaded.notes)
    assert_same_weights(loaded, model)


# -- key mismatches -------------------------------------------------------------------------------

def test_all_key_problems_listed_in_one_error(tmp_path):
    model = trained_like(small_cfg())
    sd = dict(model.state_dict())
    del sd["block.1.attn.q_conv.weight"], sd["head.bias"]
    sd["block.0.attn.extra_thing.weight"] = torch.zeros(3)
    sd["block.0.mlp.fc1_conv.weight"] = torch.zeros(64, 32, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, config=small_cfg())
    msg = str(e.value)
    for key in ("block.1.attn.q_conv.weight", "head.bias", "block.0.attn.extra_thing.weight",
                "block.0.mlp.fc1_conv.weight", "(128, 32, 1, 1)", "(64, 32, 1, 1)", "broken.pth"):
        assert key in msg, key

    loaded = load_checkpoint(path, config=small_cfg(), strict=False)
    notes = "\n".join(loaded.notes)
    assert "block.1.attn.q_conv.weight" in notes and "block.0.mlp.fc1_conv.weight" in notes
    assert torch.equal(loaded.model.state_dict()["block.0.attn.q_conv.weight"],
                       model.state_dict()["block.0.attn.q_conv.weight"])


def test_plain_state_dict_needs_config(tmp_path):
    model = trained_like(small_cfg())
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pth.*config="):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"img_size.*time_steps"):
        load_checkpoint(path, config={"attention": "STAtten", "pooling_stat": "0011", "chunk_size": 2})
    by_dict = load_checkpoint(path, config={"attention": "STAtten", "img_size": 16, "time_steps": 4,
                                            "pooling_stat": "0011", "chunk_size": 2})
    by_cfg = load_checkpoint(path, config=small_cfg())
    assert by_dict.source == by_cfg.source == "state_dict"
    assert by_dict.config == by_cfg.config == small_cfg()
    assert_same_weights(by_dict, model)


def test_unrecognised_content(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"list\.pth: not a model checkpoint"):
        load_checkpoint(path)


# -- hostile and damaged files --------------------------------------------------------------------

class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# os.system is pickled by its real module: posix.system on Linux.
@pytest.mark.parametrize("make, global_name", [
    (lambda m: _Payload(os.system, (f"touch {m}",)), f"{os.system.__module__}.system"),
    (lambda m: _Payload(builtins.eval, (f"open({str(m)!r}, 'w')",)), "builtins.eval"),
    (lambda m: _Payload(subprocess.Popen, (["touch", str(m)],)), "subprocess.Popen"),
])
def test_code_execution_payload_is_refused(tmp_path, make, global_name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": build_model(small_cfg()).state_dict(), "evil": make(marker)}, path)
    for load in (read_torch_file, load_checkpoint):
        with pytest.raises(CheckpointError) as e:
            load(path)
        assert "evil.pth" in str(e.value) and global_name in str(e.value)
        assert "could execute code" in str(e.value)
    assert not marker.exists()


def _hand_pickle(*ops: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + b"".join(ops) + pickle.STOP


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    return pickle.BINUNICODE + len(s.encode()).to_bytes(4, "little") + s.encode()


@pytest.mark.parametrize("target", [("argparse", "Namespace"), ("torch", "FloatStorage"),
                                    ("torch._utils", "_rebuild_tensor_v2")])
def test_pickle_cannot_modify_allowed_objects(tmp_path, target):
    # BUILD with slot state does setattr(obj, "dtype", "pwned") on the allowlisted object itself.
    attack = _hand_pickle(_global(*target), pickle.NONE, pickle.EMPTY_DICT, _str("dtype"),
                          _str("pwned"), pickle.SETITEM, pickle.TUPLE2, pickle.BUILD)
    path = write_zip(tmp_path / "patch.pth", {"archive/data.pkl": attack})
    with pytest.raises(CheckpointError, match=r"patch\.pth"):
        read_torch_file(path)
    assert not hasattr(argparse.Namespace, "dtype")
    benign = tmp_path / "ok.pth"
    torch.save({"x": torch.ones(2), "a": argparse.Namespace(y=1)}, benign)
    got = read_torch_file(benign)
    assert got["x"].dtype == torch.float32 and got["a"].y == 1


def test_forged_view_past_its_storage_is_refused(tmp_path):
    src = tmp_path / "ok.pth"
    torch.save({"x": torch.arange(4.0)}, src)
    records = zip_records(src)
    (pkl_name,) = [n for n in records if n.endswith("/data.pkl")]
    # size (4,) -> (400,): the storage record still holds 4 floats
    records[pkl_name] = records[pkl_name].replace(b"K\x04\x85", b"M\x90\x01\x85", 1)
    with pytest.raises(CheckpointError, match=r"forged\.pth.*reaches element 399.*holds 4"):
        read_torch_file(write_zip(tmp_path / "forged.pth", records))


def _real_checkpoint(tmp_path):
    path = tmp_path / "real.pth"
    write_upstream(path, trained_like(small_cfg(img_size=32)), upstream_args())
    return path


def test_truncated_file(tmp_path):
    data = _real_checkpoint(tmp_path).read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: truncated or corrupted"):
        load_checkpoint(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"noise\.pth: not a torch checkpoint"):
        load_checkpoint(path)


def test_zip_without_data_pkl(tmp_path):
    path = write_zip(tmp_path / "empty.zip", {"archive/version": b"3\n"})
    with pytest.raises(CheckpointError, match=r"empty\.zip.*no <prefix>/data\.pkl"):
        load_checkpoint(path)


def test_legacy_format(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pth.*legacy"):
        load_checkpoint(path)


def test_missing_storage_record(tmp_path):
    records = zip_records(_real_checkpoint(tmp_path))
    (victim,) = [n for n in records if n.endswith("/data/3")]
    del records[victim]
    path = write_zip(tmp_path / "holey.pth", records)
    with pytest.raises(CheckpointError, match=rf"holey\.pth.*{victim}.*missing"):
        load_checkpoint(path)


def test_corrupted_record_bytes(tmp_path):
    src = _real_checkpoint(tmp_path)
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(src.read_bytes())
    # the local header's name and extra lengths (torch pads the extra field to align the data)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    data[start] ^= 0xFF  # one flipped byte: the record's CRC no longer matches
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.pth.*(CRC|corrupted)"):
        load_checkpoint(path)


def test_garbage_data_pkl(tmp_path):
    path = write_zip(tmp_path / "garbage.pth", {"archive/data.pkl": b"\x80\x02}q\x00(X\x01"})
    with pytest.raises(CheckpointError, match=r"garbage\.pth: corrupted checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothere\.pth: cannot read"):
        load_checkpoint(tmp_path / "nothere.pth")


def test_numpy_object_scalar_is_refused(tmp_path):
    # scalar(dtype('O'), x) would hand back an arbitrary object; only numeric dtypes are allowed.
    attack = _hand_pickle(_global("numpy.core.multiarray", "scalar"), _global("numpy", "dtype"),
                          _str("O8"), pickle.NEWFALSE, pickle.NEWTRUE, pickle.TUPLE3, pickle.REDUCE,
                          pickle.NONE, pickle.TUPLE2, pickle.REDUCE)
    path = write_zip(tmp_path / "obj.pth", {"archive/data.pkl": attack})
    with pytest.raises(CheckpointError, match=r"obj\.pth.*not a numeric type"):
        read_torch_file(path)
