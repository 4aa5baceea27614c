"""snncompile: trained PyTorch spiking transformers -> graph IR -> bit-accurate Loihi-style target."""
__version__ = "0.1.0"
