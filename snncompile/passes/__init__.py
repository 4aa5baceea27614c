"""Graph-to-graph passes and the pipelines that chain them (see ``pipeline.py`` for the contract).

``PIPELINES`` holds the canned pipelines as explicit tuples of pass functions (never names).
"""
from .fold_batchnorm import fold_batchnorm
from .pipeline import Pass, PassContext, PassError, reports, run_pipeline, to_fixpoint
from .rewrite import Edit, RewriteError, apply_edit, rewrite_graph
from .verify import VerificationError, compare_graphs, verify_pipeline

PIPELINES: dict[str, tuple[Pass, ...]] = {
    "float": (fold_batchnorm,),
}

__all__ = ["PIPELINES", "Pass", "PassContext", "PassError", "reports", "run_pipeline", "to_fixpoint",
           "fold_batchnorm", "Edit", "RewriteError", "apply_edit", "rewrite_graph", "VerificationError",
           "compare_graphs", "verify_pipeline"]
