"""snncompile: trained PyTorch spiking transformers -> graph IR -> bit-accurate Loihi-style target."""
from .nn.sdt import SpikeDrivenTransformer, build_model
from .zoo.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, ModelConfig

__version__ = "0.1.0"
__all__ = ["SpikeDrivenTransformer", "build_model", "load_checkpoint", "save_checkpoint", "LoadedCheckpoint",
           "CheckpointError", "ModelConfig", "ConfigError"]
