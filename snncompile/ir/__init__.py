"""snncompile's graph IR: typed nodes with exact discrete-time semantics."""
from .graph import Graph, GraphError, HistoryEntry, Node
from .interpret import run_graph
from .ops import OPS, OPS_BY_NAME
from .types import FLOAT32, SPIKE, TERNARY, DType, TensorType, int_type

__all__ = ["Graph", "GraphError", "HistoryEntry", "Node", "run_graph", "OPS", "OPS_BY_NAME", "DType",
           "TensorType", "FLOAT32", "SPIKE", "TERNARY", "int_type"]
