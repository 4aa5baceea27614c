"""snncompile: trained PyTorch spiking transformers -> graph IR -> bit-accurate Loihi-style target.

The names below load their stage (and torch) on first use, not on ``import snncompile``: the command line's
``--help`` and ``--version`` import this package and need none of it."""
from importlib import import_module

from .config import ConfigError, ModelConfig

__version__ = "0.1.0"
_LAZY = {"SpikeDrivenTransformer": ".nn.sdt", "build_model": ".nn.backbones", "load_checkpoint": ".zoo.checkpoint",
         "save_checkpoint": ".zoo.checkpoint", "LoadedCheckpoint": ".zoo.checkpoint",
         "CheckpointError": ".zoo.checkpoint"}
__all__ = ["SpikeDrivenTransformer", "build_model", "load_checkpoint", "save_checkpoint", "LoadedCheckpoint",
           "CheckpointError", "ModelConfig", "ConfigError"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
