"""Front ends: trained models -> graph IR."""
from .builder import ExportError
from .torch_export import export

__all__ = ["export", "ExportError"]
