"""ONNX export of snncompile IR graphs: custom domain ``snncompile`` whose ops are model-local functions."""
from .export import OnnxExportError, run_onnx, to_onnx, write_onnx
from .functions import DOMAIN, REFUSED, SPECS

__all__ = ["DOMAIN", "REFUSED", "SPECS", "OnnxExportError", "run_onnx", "to_onnx", "write_onnx"]
