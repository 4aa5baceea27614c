"""Reference simulator: batched runs of any graph with spike/membrane traces and counts, and
dataset-scale (optionally sharded, torch.distributed) evaluation."""
from .dataset import EvalResult, evaluate_graph, graph_feeds, shard_indices
from .run import NodeCounts, SimResult, count_spikes, merge_counts, simulate, spiking_nodes, zero_counts

__all__ = ["simulate", "SimResult", "NodeCounts", "count_spikes", "merge_counts", "spiking_nodes", "zero_counts",
           "evaluate_graph", "EvalResult", "graph_feeds", "shard_indices"]
