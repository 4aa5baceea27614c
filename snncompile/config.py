"""Model-zoo configuration: one YAML file per model, parsed once into frozen dataclasses.

A zoo file has four sections::

    name: statten-digits            # unique name, used on the command line
    description: ...
    model: {...}                    # ModelConfig fields
    data: {...}                     # DataConfig fields
    train: {...}                    # TrainConfig fields (optional)
    checkpoint: statten_digits.pt   # trained weights next to the YAML (optional)

Every problem in a file is reported at once, each naming the file and the field. A real-valued field must be
a finite number (YAML's ``.nan`` and ``.inf`` are refused) within its meaningful range.

With a ``checkpoint``, the architecture is the checkpoint's: the ``model`` section describes it and may give
any subset of its fields, and every field it gives must equal the checkpoint's (a difference is an error
naming each field, :func:`snncompile.zoo.registry.load_entry_checkpoint`), never silently ignored nor
overriding trained weights. A trained model runs with another attention through ``--attention``, not by
editing its YAML.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ATTENTION_MODES = ("SDT", "STAtten", "SSA", "A2OS2A", "DS2TA")
# Model families, each a torch model in nn/ (nn/backbones.py), an exporter in frontend/ and an upstream checkpoint
# reader in zoo/: "sdt" is the Spike-Driven Transformer v1 as the STAtten repository builds it; "spikformer-*" the
# three code variants of the Spikformer repository (models.md §4; backbone_checkpoints.md).
# "sdt-v2" the Spike-Driven Transformer V2 (Meta-SpikeFormer).
# "sdt-v3": Spike-Driven Transformer V3 (E-SpikeFormer) Model_Base, integer activations 0..4, no time axis.
# "qkformer-cifar10", "qkformer-imagenet": QKFormer's two upstream code variants.
SPIKFORMER_VARIANTS = ("spikformer-cifar10", "spikformer-cifar10dvs", "spikformer-imagenet")
BACKBONES = ("sdt",) + SPIKFORMER_VARIANTS + ("sdt-v2", "sdt-v3", "qkformer-cifar10", "qkformer-imagenet")
# the backbones whose attention is fixed by their architecture (they do not read the ``attention`` field)
BUILT_IN_ATTENTION = {"qkformer-cifar10": "Token-QK + SSA", "qkformer-imagenet": "Token-QK + SSA",
                      "sdt-v3": "multi-level linear"}
SPIKE_MODES = ("lif", "plif")

# The largest architecture accepted (README, "Resource limits"): well above every published
# configuration (ImageNet 8-768: dim 768, 8 layers, 224 px, 1000 classes; T = 16 on event data), and
# checked before a model is built, so that a config or checkpoint cannot make the builder allocate
# without bound. MAX_WEIGHTS bounds the weights of a model built from a checkpoint (1 GiB of float32).
MAX_SIZES = {"img_size": 1024, "in_channels": 1024, "num_classes": 100_000, "dim": 4096, "num_heads": 64,
             "layers": 64, "mlp_ratio": 16, "time_steps": 256, "chunk_size": 256, "ds2ta_window": 256}
MAX_WEIGHTS = 2 ** 28


class ConfigError(ValueError):
    """A configuration file or dictionary is invalid; the message lists every problem."""


def _doc(text: str, **kw) -> Any:
    return field(metadata={"doc": text}, **kw)


Range = tuple[Callable[[float], bool], str]  # (holds for a valid value, what a valid value is)
_POSITIVE: Range = (lambda v: v > 0, "> 0")
_NON_NEGATIVE: Range = (lambda v: v >= 0, ">= 0")


def _float_problems(config, ranges: dict[str, Range]) -> list[str]:
    """Every real-valued field of ``config`` that is not finite or outside its range in ``ranges``."""
    problems = []
    for f in (f for f in dataclasses.fields(config) if f.type == "float"):
        value = getattr(config, f.name)
        if not math.isfinite(value):
            problems.append(f"{f.name}: must be a finite number, got {value}")
        elif f.name in ranges and not ranges[f.name][0](value):
            problems.append(f"{f.name}: must be {ranges[f.name][1]}, got {value}")
    return problems


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a zoo model: its backbone (model family) and sizes; the fields a backbone does not read
    keep their defaults."""

    backbone: str = _doc(f"model family: {', '.join(BACKBONES)} (sdt: Spike-Driven Transformer v1 as in the "
                         "STAtten repository; qkformer-cifar10 / qkformer-imagenet: QKFormer's cifar10/ and "
                         "imagenet/ models)", default="sdt")
    attention: str = _doc("attention core: SDT (SDSA), STAtten, SSA, A2OS2A or DS2TA", default="STAtten")
    img_size: int = _doc("input height = width in pixels", default=32)
    in_channels: int = _doc("input channels (3 for RGB, 1 for digits, 2 for ON/OFF events)", default=3)
    num_classes: int = _doc("classifier outputs", default=10)
    dim: int = _doc("embedding width D (divisible by 8 and by num_heads)", default=256)
    num_heads: int = _doc("attention heads H; heads are contiguous channel groups", default=8)
    layers: int = _doc("encoder blocks L (QKFormer: upstream depths, the blocks of all stages)", default=2)
    mlp_ratio: int = _doc("MLP hidden width = mlp_ratio * dim", default=4)
    time_steps: int = _doc("SNN timesteps T", default=4)
    chunk_size: int = _doc("STAtten temporal block size Bk; T must be a multiple of it", default=2)
    pooling_stat: str = _doc("4 characters of 0/1: max-pool after each stem stage", default="0011")
    spike_mode: str = _doc("lif or plif. SDT applies it to every neuron (Spike-Driven Transformer "
                           "repository); the other modes to the MLP and head only (STAtten repository)",
                           default="lif")
    dvs_mode: bool = _doc("event-data mode: input [B, T, C, H, W] events, STAtten scale 1/(N*Bk); sdt backbone: "
                          "also 3x3 erode pooling in attention",
                          default=False)
    tet: bool = _doc("keep per-timestep logits [T, B, C] (TET training); mean over T otherwise",
                     default=False)
    ssa_scale: float = _doc("SSA scale on Q K^T V (Spikformer CIFAR-10 and ImageNet code: 0.125, CIFAR10-DVS "
                            "code: 0.25)", default=0.125)
    ternary_tau: float = _doc("A2OS2A ternary V neuron tau (UNVERIFIED in the paper)", default=2.0)
    ternary_threshold: float = _doc("A2OS2A ternary V neuron threshold (UNVERIFIED)", default=1.0)
    ds2ta_window: int = _doc("DS2TA temporal attention window TAW (UNVERIFIED, 3)", default=3)
    ds2ta_tau_init: float = _doc("DS2TA initial attenuation constant, lambda(d) = exp(-d/tau)",
                                 default=4.0)
    ds2ta_scale: float = _doc("DS2TA scale on LUT(Q K^T) V", default=0.125)
    stage_dims: str = _doc("widths of the four stages, comma-separated (upstream embed_dim list; sdt-v3 only, "
                           "e.g. '32,64,128,192')", default="")
    stage_layers: str = _doc("blocks of the two attention stages, comma-separated (sdt-v3 only; upstream "
                             "'6,2')", default="6,2")
    kd_head: bool = _doc("sdt-v2: a second classifier head_kd (upstream --kd); the logits are the mean of both "
                         "heads", default=False)

    # -- derived quantities -------------------------------------------------------------------
    @property
    def token_grid(self) -> int:
        """Token-grid side Hs = img_size / 2^(number of pools)."""
        return self.img_size // 2 ** self.pooling_stat.count("1")

    @property
    def num_tokens(self) -> int:
        return self.token_grid ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """``stage_dims`` as integers (empty when it is not a comma-separated list of integers)."""
        return _int_list(self.stage_dims)

    @property
    def stage_depths(self) -> tuple[int, ...]:
        return _int_list(self.stage_layers)

    @property
    def attention_core(self) -> str:
        """The attention this model computes: its backbone's own, or the ``attention`` field."""
        return BUILT_IN_ATTENTION.get(self.backbone, self.attention)

    @property
    def size_summary(self) -> str:
        """Width x blocks as the upstream names them (sdt-v3: the four stage widths x its attention blocks)."""
        if self.backbone == "sdt-v3":
            return f"{self.stage_dims.replace(',', '/')}x{sum(self.stage_depths)}"
        return f"{self.dim}x{self.layers}"

    @property
    def statten_scale(self) -> float:
        """STAtten's alpha as the upstream code computes it (models.md §3.4)."""
        if self.dvs_mode:
            return 1 / (self.token_grid * self.token_grid * self.chunk_size)
        return 1 / self.token_grid

    def problems(self) -> list[str]:
        p = []
        if self.backbone not in BACKBONES:
            p.append(f"backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.attention not in ATTENTION_MODES:
            p.append(f"attention: {self.attention!r} is not one of {', '.join(ATTENTION_MODES)}")
        if self.spike_mode not in SPIKE_MODES:
            p.append(f"spike_mode: {self.spike_mode!r} is not one of {', '.join(SPIKE_MODES)}")
        for name, largest in MAX_SIZES.items():
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1, got {getattr(self, name)}")
            elif getattr(self, name) > largest:
                p.append(f"{name}: must be <= {largest}, got {getattr(self, name)}")
        if self.dim % 8:
            p.append(f"dim: {self.dim} must be divisible by 8 (the stem widths are D/8, D/4, D/2)")
        if self.num_heads >= 1 and self.dim % self.num_heads:
            p.append(f"dim: {self.dim} is not divisible by num_heads={self.num_heads}")
        if len(self.pooling_stat) != 4 or set(self.pooling_stat) - {"0", "1"}:
            p.append(f"pooling_stat: {self.pooling_stat!r} must be 4 characters of 0/1")
        elif self.img_size % 2 ** self.pooling_stat.count("1"):
            p.append(f"img_size: {self.img_size} is not divisible by 2^{self.pooling_stat.count('1')}"
                     f" (pooling_stat {self.pooling_stat!r})")
        if self.backbone.startswith("qkformer"):
            p += _qkformer_problems(self)
        if self.backbone in SPIKFORMER_VARIANTS and (self.spike_mode != "lif" or self.tet):
            p.append(f"spike_mode/tet: the {self.backbone} backbone has LIF neurons only and averages over T before "
                     f"its head (spike_mode 'lif', tet false), got {self.spike_mode!r}, {self.tet}")
        # (the backbones with STAtten blocks: SDT v1 and Spikformer)
        stattens = self.attention == "STAtten" and (self.backbone == "sdt" or self.backbone in SPIKFORMER_VARIANTS)
        if stattens and self.chunk_size >= 1 and self.time_steps % self.chunk_size:
            p.append(f"chunk_size: time_steps={self.time_steps} is not a multiple of chunk_size="
                     f"{self.chunk_size} (STAtten splits T into whole blocks)")
        if self.backbone == "sdt-v3":
            p += self._sdt_v3_problems()
        if self.backbone == "sdt-v2":
            p += self._sdt_v2_problems()
        return p + _float_problems(self, {"ds2ta_tau_init": _POSITIVE, "ternary_tau": (lambda v: v > 1, "> 1"),
                                          "ssa_scale": _POSITIVE, "ds2ta_scale": _POSITIVE,
                                          "ternary_threshold": _POSITIVE})

    def _sdt_v2_problems(self) -> list[str]:
        """Checks that apply to the sdt-v2 backbone only (stage widths D/8 .. 5D/4, four stride-2 stages)."""
        p = []
        if self.img_size % 16:
            p.append(f"img_size: {self.img_size} is not divisible by 16 (sdt-v2 downsamples four times by 2)")
        if self.num_heads >= 1 and self.dim % 8 == 0 and (self.dim * 5 // 4) % self.num_heads:
            p.append(f"num_heads: sdt-v2's last stage width 5*dim/4 = {self.dim * 5 // 4} is not divisible by "
                     f"num_heads={self.num_heads}")
        if self.layers < 3:
            p.append(f"layers: sdt-v2 has layers-2 blocks in stage 3 and 2 in stage 4, so layers >= 3, got "
                     f"{self.layers}")
        if self.attention != "SSA":
            p.append(f"attention: sdt-v2's attention is SSA (Q (K^T V) * ssa_scale), got {self.attention!r}")
        if self.spike_mode != "lif" or self.dvs_mode or self.tet:
            p.append("spike_mode, dvs_mode, tet: sdt-v2 has LIF neurons on static images and mean logits only "
                     "(spike_mode lif, dvs_mode and tet false)")
        return p

    def _sdt_v3_problems(self) -> list[str]:
        """The stage fields of sdt-v3 (only that backbone reads them)."""
        p = []
        widths, depths = self.stage_widths, self.stage_depths
        if len(widths) != 4 or not all(2 <= w <= MAX_SIZES["dim"] and w % 2 == 0 for w in widths):
            p.append(f"stage_dims: {self.stage_dims!r} must be 4 comma-separated even widths in "
                     f"[2, {MAX_SIZES['dim']}] (backbone sdt-v3)")
        elif self.num_heads >= 1 and (widths[2] % self.num_heads or widths[3] % self.num_heads):
            p.append(f"stage_dims: the attention stages' widths {widths[2]}, {widths[3]} must be divisible by "
                     f"num_heads={self.num_heads} (backbone sdt-v3)")
        if len(depths) != 2 or not all(0 <= d <= MAX_SIZES["layers"] for d in depths):
            p.append(f"stage_layers: {self.stage_layers!r} must be 2 comma-separated block counts in "
                     f"[0, {MAX_SIZES['layers']}] (backbone sdt-v3)")
        if self.time_steps != 1:
            p.append(f"time_steps: {self.time_steps} must be 1 (backbone sdt-v3 has no time axis: upstream's "
                     "'T = 1 x D = 4' sends levels, not spikes over time)")
        if self.img_size % 16:
            p.append(f"img_size: {self.img_size} must be divisible by 16 (backbone sdt-v3 downsamples 4 times "
                     "by 2)")
        return p


def _int_list(text: str) -> tuple[int, ...]:
    parts = [t.strip() for t in text.split(",")]
    return tuple(int(t) for t in parts) if all(t.isdigit() and len(t) <= 6 for t in parts) else ()


def _qkformer_problems(cfg: ModelConfig) -> list[str]:
    """QKFormer only: stage widths D/4, D/2, D split into num_heads heads; the image halved 2 (CIFAR-10) or 4
    (ImageNet) times; at least the fixed early blocks (1 + 1 or 1 + 2)."""
    p = []
    if cfg.num_heads >= 1 and (cfg.dim // 4) % cfg.num_heads:
        p.append(f"num_heads: QKFormer's first stage width dim/4 = {cfg.dim // 4} is not divisible by "
                 f"num_heads={cfg.num_heads}")
    halvings, early = (2, 2) if cfg.backbone == "qkformer-cifar10" else (4, 3)
    if cfg.img_size % 2 ** halvings:
        p.append(f"img_size: {cfg.img_size} is not divisible by {2 ** halvings} ({cfg.backbone} halves it "
                 f"{halvings} times)")
    if cfg.layers < early:
        p.append(f"layers: {cfg.backbone} has {early} blocks before stage 3 (layers is upstream's depths, all "
                 f"stages); layers must be >= {early}, got {cfg.layers}")
    return p


DATASETS = ("digits", "event-digits", "cifar10", "cifar10-dvs", "ncaltech101", "imagenet")
#: samples that calibrate a compile unless told otherwise (why so few: ``snncompile.data.calibration``)
CALIBRATION_SAMPLES = 16


@dataclass(frozen=True)
class DataConfig:
    """Where evaluation and training data come from."""

    dataset: str = _doc(f"one of {', '.join(DATASETS)}", default="digits")
    root: str | None = _doc("local directory of user-supplied data (CIFAR-10, CIFAR10-DVS, ...)",
                            default=None)
    seed: int = _doc("seed of the train/test split and of generated event data", default=0)
    test_fraction: float = _doc("held-out fraction for the bundled digits", default=0.2)

    def problems(self) -> list[str]:
        p = []
        if self.dataset not in DATASETS:
            p.append(f"dataset: {self.dataset!r} is not one of {', '.join(DATASETS)}")
        return p + _float_problems(self, {"test_fraction": (lambda v: 0 < v < 1, "in (0, 1)")})


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (AdamW + cosine schedule, label smoothing, optional TET loss)."""

    epochs: int = _doc("passes over the training set", default=30)
    batch_size: int = _doc("samples per step", default=64)
    lr: float = _doc("peak learning rate", default=3e-3)
    weight_decay: float = _doc("AdamW weight decay", default=1e-2)
    label_smoothing: float = _doc("cross-entropy label smoothing", default=0.1)
    tet_lambda: float = _doc("TET MSE weight (only when model.tet)", default=1e-3)
    tet_means: float = _doc("TET MSE target", default=1.0)
    seed: int = _doc("seed of initialisation and shuffling", default=0)

    def problems(self) -> list[str]:
        p = [f"{n}: must be >= 1" for n in ("epochs", "batch_size") if getattr(self, n) < 1]
        return p + _float_problems(self, {"lr": _POSITIVE, "weight_decay": _NON_NEGATIVE,
                                          "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
                                          "tet_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]")})


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: its YAML file parsed and validated."""

    name: str
    description: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    checkpoint: Path | None  # absolute path of the shipped weights, if any
    source: Path | None      # the YAML file
    model_fields: frozenset[str] = frozenset()  # the model fields the YAML gives (the others are defaults)


def _build(cls, raw: Any, section: str, problems: list[str]):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{section}: expected a mapping, got {type(raw).__name__}")
        return cls()
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            problems.append(f"{section}.{key}: unknown field (known: {', '.join(names)})")
            continue
        expected = names[key].type
        ok = _type_ok(value, expected)
        if not ok:
            problems.append(f"{section}.{key}: expected {expected}, got {value!r}")
            continue
        kwargs[key] = float(value) if expected == "float" else value
    obj = cls(**kwargs)
    problems.extend(f"{section}.{msg}" for msg in obj.problems())
    return obj


def is_int(value: Any) -> bool:
    """A Python int that is not a bool (``True`` would pass ``isinstance(x, int)``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return is_int(value)
    if expected == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "str":
        return isinstance(value, str)
    if expected == "str | None":
        return value is None or isinstance(value, str)
    raise TypeError(f"unhandled config field type {expected}")


def model_config_from_dict(raw: dict, where: str = "model config") -> ModelConfig:
    """Validate a plain dict (e.g. embedded in a checkpoint) into a ModelConfig."""
    problems: list[str] = []
    cfg = _build(ModelConfig, raw, "model", problems)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return cfg


def parse_entry(raw: Any, source: Path | None = None) -> ZooEntry:
    where = str(source) if source else "<config>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    problems: list[str] = []
    known = {"name", "description", "model", "data", "train", "checkpoint"}
    problems += [f"{k}: unknown top-level key (known: {', '.join(sorted(known))})" for k in raw
                 if k not in known]
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append("name: a non-empty string is required")
    model = _build(ModelConfig, raw.get("model"), "model", problems)
    data = _build(DataConfig, raw.get("data"), "data", problems)
    train = _build(TrainConfig, raw.get("train"), "train", problems)
    checkpoint = None
    if raw.get("checkpoint") is not None:
        if not isinstance(raw["checkpoint"], str):
            problems.append(f"checkpoint: expected a file name, got {raw['checkpoint']!r}")
        else:
            base = source.parent if source else Path.cwd()
            checkpoint = (base / raw["checkpoint"]).resolve()
            if not checkpoint.is_file():
                problems.append(f"checkpoint: {checkpoint} does not exist")
    if problems:
        raise ConfigError(f"{where}: invalid model config:\n  - " + "\n  - ".join(problems))
    return ZooEntry(name=name, description=str(raw.get("description", "")), model=model, data=data,
                    train=train, checkpoint=checkpoint, source=source, model_fields=frozenset(raw.get("model") or ()))


def load_entry_file(path: str | Path) -> ZooEntry:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_entry(raw, path.resolve())
