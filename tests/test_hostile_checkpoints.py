"""Hostile checkpoints: no uninitialised memory, no unbounded allocation, one-line errors (issue 15)."""
from __future__ import annotations

import pickle
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

from hostile_files import (glob, hand_pickle, integer, ints, record_bytes, storage_bytes, tensor, text,
                           write_torch_zip)
from snncompile.config import MAX_SIZES, MAX_WEIGHTS, ConfigError, parse_entry
from snncompile.ir import io as irio
from snncompile.zoo import checkpoint, torchfile
from snncompile.zoo.checkpoint import CheckpointError, load_checkpoint, read_torch_file
from upstream_files import DROP, small_cfg, trained_like, upstream_args, write_upstream


def one_line_error(call, *args, error=CheckpointError, **kw) -> str:
    with pytest.raises(error) as e:
        call(*args, **kw)
    message = str(e.value)
    assert "\n" not in message, message
    return message


# -- BUILD (__setstate__) and the other opcodes that act on an object ------------------------------

EMPTY = tensor("0", 0, (0,), (1,))  # a tensor over the empty storage record 0

# Tensor.__setstate__ with a 4-tuple calls set_(source, offset, size, stride), which resizes the storage
# to fit; a 5-tuple swaps .data; a 3-tuple sets requires_grad and _backward_hooks.
STATES = {
    "set_": lambda n: pickle.MARK + EMPTY + integer(0) + ints((n,)) + ints((1,)) + pickle.TUPLE,
    "data": lambda n: pickle.MARK + EMPTY + pickle.NONE + pickle.NONE + pickle.NONE + pickle.NONE + pickle.TUPLE,
    "hooks": lambda n: pickle.MARK + pickle.NEWTRUE + pickle.NONE + pickle.EMPTY_DICT + pickle.TUPLE,
}


def build_on(target: bytes, state: bytes) -> bytes:
    return hand_pickle(pickle.EMPTY_DICT, text("head.weight"), target, state, pickle.BUILD, pickle.SETITEM)


@pytest.mark.parametrize("numel", [64, 2_000_000_000])
def test_build_cannot_resize_a_tensor_storage(tmp_path, numel):
    # the reported attack: head.weight held 256 bytes of heap from an empty record, or reserved 8 GB
    path = write_torch_zip(tmp_path / "build.pth", build_on(EMPTY, STATES["set_"](numel)), {"0": b""})
    assert path.stat().st_size < 600
    message = one_line_error(read_torch_file, path)
    assert message.startswith(f"refusing to load {path}") and "BUILD (__setstate__) to a Tensor" in message
    one_line_error(load_checkpoint, path, config=small_cfg())


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("parameter", [False, True])
def test_build_never_reaches_a_tensor(tmp_path, state, parameter):
    target = EMPTY if not parameter else (glob("torch._utils", "_rebuild_parameter") + pickle.MARK + EMPTY
                                          + pickle.NEWFALSE + pickle.EMPTY_DICT + pickle.TUPLE + pickle.REDUCE)
    path = write_torch_zip(tmp_path / "state.pth", build_on(target, STATES[state](8)), {"0": b""})
    kind = "Parameter" if parameter else "Tensor"
    assert f"BUILD (__setstate__) to a {kind}" in one_line_error(read_torch_file, path)


@pytest.mark.parametrize("opcode, ops", [
    ("SETITEM", integer(0) + integer(7) + pickle.SETITEM),               # t[0] = 7
    ("SETITEMS", pickle.MARK + integer(0) + integer(7) + pickle.SETITEMS),
    ("APPEND", integer(7) + pickle.APPEND),
    ("APPENDS", pickle.MARK + integer(7) + pickle.APPENDS),
    ("ADDITEMS", pickle.MARK + integer(7) + pickle.ADDITEMS),
])
def test_container_opcodes_act_only_on_containers(tmp_path, opcode, ops):
    attack = hand_pickle(tensor("0", 2, (2,), (1,)) + ops)
    path = write_torch_zip(tmp_path / "op.pth", attack, {"0": bytes(8)})
    assert f"applies {opcode} to a Tensor" in one_line_error(read_torch_file, path)


def test_what_torch_save_builds_still_loads(tmp_path):
    # BUILD on a numpy dtype (numpy scalars), an OrderedDict (state_dict()._metadata) and a Namespace
    model = trained_like(small_cfg())
    path = write_upstream(tmp_path / "up.pth", model, upstream_args())
    got = read_torch_file(path)
    assert got["state_dict"]._metadata == model.state_dict()._metadata
    assert got["metric"] == 93.25 and got["args"].dim == 32
    assert set(storage_bytes(got)) <= record_bytes(path)


def test_numpy_dtype_build_accepts_only_a_byte_order(tmp_path):
    state = pickle.MARK + integer(3) + text("<") + pickle.NONE * 3 + integer(-1) + integer(-1) \
        + integer(16) + pickle.TUPLE  # flags 16: not what numpy writes for a numeric dtype
    attack = hand_pickle(glob("numpy", "dtype") + text("f8") + pickle.NEWFALSE + pickle.NEWFALSE
                         + pickle.TUPLE3 + pickle.REDUCE + state + pickle.BUILD)
    path = write_torch_zip(tmp_path / "dtype.pth", attack)
    assert "BUILD (__setstate__) to a Float64DType" in one_line_error(read_torch_file, path)


# -- sizes: decompression, records, tensors, nesting --------------------------------------------------

def test_deflate_bomb_is_refused_before_decompressing(tmp_path):
    numel = 2 * 1024 ** 2  # 8 MiB of zeros deflate to 8 KB
    path = write_torch_zip(tmp_path / "bomb.pth", hand_pickle(tensor("0", numel, (numel,), (1,))),
                           {"0": bytes(4 * numel)}, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 20_000
    tracemalloc.start()
    try:
        message = one_line_error(read_torch_file, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "above the limit of 100:1 (a zip bomb?)" in message and peak < 1024 ** 2


def test_recompressed_checkpoint_loads(tmp_path):
    src = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()), upstream_args())
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    loaded = load_checkpoint(tmp_path / "deflated.pth")
    assert torch.equal(loaded.model.head.weight, load_checkpoint(src).model.head.weight)


@pytest.mark.parametrize("limit, value, expected", [
    ("MAX_PICKLE_BYTES", 100, r"data\.pkl' holds \d+ bytes uncompressed, more than the limit of 100"),
    ("MAX_TENSOR_BYTES", 100, r"data/0' holds 400 bytes uncompressed, more than the limit of 100"),
    ("MAX_TOTAL_BYTES", 300, r"entries hold \d+ bytes uncompressed, more than the limit of 300"),
])
def test_limits_are_checked_before_reading(tmp_path, monkeypatch, limit, value, expected):
    path = tmp_path / "t.pth"
    torch.save({"x": torch.arange(100.0)}, path)
    monkeypatch.setattr(torchfile, limit, value)
    with pytest.raises(CheckpointError, match=expected):
        read_torch_file(path)


def test_a_view_larger_than_the_tensor_limit_is_refused(tmp_path):
    # stride 0 over one element passes the bounds check; its size is what a caller would allocate
    path = write_torch_zip(tmp_path / "wide.pth", hand_pickle(tensor("0", 1, (2 ** 40,), (0,))), {"0": bytes(4)})
    message = one_line_error(read_torch_file, path)
    assert f"holds {4 * 2 ** 40} bytes, more than the limit of {torchfile.MAX_TENSOR_BYTES}" in message


def test_other_compression_methods_are_refused(tmp_path):
    path = write_torch_zip(tmp_path / "bz.pth", hand_pickle(pickle.NONE), compression=zipfile.ZIP_BZIP2)
    assert "compressed with method 12" in one_line_error(read_torch_file, path)


def test_deep_nesting_is_refused(tmp_path):
    deep = hand_pickle(pickle.EMPTY_LIST * 1000 + pickle.APPEND * 999)
    path = write_torch_zip(tmp_path / "deep.pth", deep)
    assert "nests containers more than 100 deep" in one_line_error(read_torch_file, path)
    shallow = write_torch_zip(tmp_path / "ok.pth", hand_pickle(pickle.EMPTY_LIST * 50 + pickle.APPEND * 49))
    assert read_torch_file(shallow) == eval("[" * 50 + "]" * 50)


# -- architecture sizes ------------------------------------------------------------------------------

@pytest.fixture
def builds(monkeypatch):
    """The device every model is built on while loading (meta: shapes only, nothing allocated)."""
    devices = []
    real = checkpoint.build_model

    def spy(cfg):
        devices.append(torch.empty(0).device.type)
        return real(cfg)
    monkeypatch.setattr(checkpoint, "build_model", spy)
    return devices


def test_block_key_cannot_build_ten_million_blocks(tmp_path, builds):
    state_dict = trained_like(small_cfg()).state_dict()
    state_dict["block.10000000.x"] = torch.zeros(1)
    path = tmp_path / "sd.pth"
    torch.save(state_dict, path)
    message = one_line_error(load_checkpoint, path, config={"attention": "STAtten", "img_size": 16,
                                                           "time_steps": 4, "pooling_stat": "0011"})
    assert "key 'block.10000000.x' names block 10000000; a model has at most 64 blocks" in message
    up = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()), upstream_args(layer=DROP))
    obj = read_torch_file(up)
    obj["state_dict"]["block.99.attn.x"] = torch.zeros(1)
    torch.save(obj, up)
    assert "key 'block.99.attn.x' names block 99" in one_line_error(load_checkpoint, up)
    assert builds == []


@pytest.mark.parametrize("field, arg", [("dim", "dim"), ("layers", "layer"), ("time_steps", "time_steps"),
                                        ("img_size", "img_size"), ("num_heads", "num_heads")])
def test_huge_architecture_in_args_is_one_line(tmp_path, builds, field, arg):
    path = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()), upstream_args(**{arg: 2 ** 40}))
    message = one_line_error(load_checkpoint, path)
    assert f"model.{field}: must be <= {MAX_SIZES[field]}, got {2 ** 40}" in message and builds == []


def test_weights_over_the_limit_are_refused_before_allocating(tmp_path, builds):
    path = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()),
                          upstream_args(dim=4096, num_heads=64, layer=64, mlp_ratio=16))
    message = one_line_error(load_checkpoint, path, strict=False)
    assert f"weights, more than the limit of {MAX_WEIGHTS}" in message and builds == ["meta"]


def test_mismatched_weights_are_refused_before_allocating(tmp_path, builds):
    path = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()), upstream_args(dim=64))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)
    assert builds == ["meta"]
    assert load_checkpoint(write_upstream(tmp_path / "ok.pth", trained_like(small_cfg()), upstream_args()))
    assert builds == ["meta", "meta", "cpu"]


def test_huge_dim_in_a_model_config_is_one_error_naming_the_field():
    with pytest.raises(ConfigError) as e:
        parse_entry({"name": "big", "model": {"dim": 10 ** 12}})
    assert f"model.dim: must be <= {MAX_SIZES['dim']}, got {10 ** 12}" in str(e.value)


# -- what the fuzzing found ---------------------------------------------------------------------------

def test_a_name_flagged_utf8_that_is_not_is_one_error(tmp_path):
    path = write_torch_zip(tmp_path / "name.pth", hand_pickle(pickle.NONE))
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")  # the last entry's directory record: flag it UTF-8, break its name
    data[central + 9] |= 0x08  # general purpose flag bit 11: the name is UTF-8
    data[central + 46] = 0xED
    path.write_bytes(bytes(data))
    assert "truncated or corrupted zip archive: UnicodeDecodeError" in one_line_error(read_torch_file, path)


@pytest.mark.parametrize("key", [3, ("a", 1), "head.weight\nhead.bias"])
def test_state_dict_keys_must_be_printable_strings(tmp_path, key):
    state_dict = trained_like(small_cfg()).state_dict()
    state_dict[key] = torch.zeros(1)
    path = tmp_path / "keys.pth"
    torch.save({"state_dict": state_dict, "args": upstream_args()}, path)
    assert f"state_dict keys must be printable strings, got {key!r}" in one_line_error(load_checkpoint, path)


@pytest.mark.parametrize("value", [torch.zeros(20), [1], {"a": [1]}])
def test_an_argument_that_is_not_a_scalar_is_one_line_naming_it(tmp_path, value):
    path = write_upstream(tmp_path / "up.pth", trained_like(small_cfg()), upstream_args(dim=value))
    assert f"args.dim is a {type(value).__name__} (" in one_line_error(load_checkpoint, path)


def test_the_limits_are_the_ones_the_readme_states():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Resource limits")[1].split("\n## ")[0]

    def size(n: int) -> str:
        return f"{n // 1024 ** 3} GiB" if n % 1024 ** 3 == 0 else f"{n // 1024 ** 2} MiB"
    assert all(f"`{name}`" in section and f"{largest:,}".replace(",", "" if largest < 10_000 else ",") in section
               for name, largest in MAX_SIZES.items())
    assert MAX_WEIGHTS == 2 ** 28 and "2^28 weights" in section
    assert f"{size(torchfile.MAX_PICKLE_BYTES)} / {size(torchfile.MAX_TENSOR_BYTES)} / " \
           f"{size(torchfile.MAX_TOTAL_BYTES)}" in section
    assert f"{torchfile.MAX_RATIO}:1" in section and f"{torchfile.MAX_NESTING} deep" in section
    assert f"{size(irio.MAX_ENTRY_BYTES)} / {size(irio.MAX_TOTAL_BYTES)} / {size(irio.MAX_JSON_BYTES)}, " \
           f"{irio.MAX_JSON_DEPTH} deep" in section
    assert f"{irio.MAX_RATIO}:1" in section
    assert f"{irio.MAX_NODES:,} / {irio.MAX_ENTRIES:,} / {irio.MAX_DTYPE_BITS} bits" in section
