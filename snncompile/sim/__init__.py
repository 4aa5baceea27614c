"""Reference simulator: the IR interpreter with fast exact kernels (``run_graph``), batched runs of any graph
with spike/membrane traces and counts, and dataset-scale (optionally sharded, torch.distributed) evaluation."""
from .run import (NodeCounts, SimResult, count_spikes, evaluate_node, merge_counts, run_graph, simulate, spiking_nodes,
                  zero_counts)
from .dataset import EvalResult, evaluate_graph, graph_feeds, shard_indices

__all__ = ["run_graph", "evaluate_node", "simulate", "SimResult", "NodeCounts", "count_spikes", "merge_counts",
           "spiking_nodes", "zero_counts", "evaluate_graph", "EvalResult", "graph_feeds", "shard_indices"]
