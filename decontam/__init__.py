"""decontam: benchmark registry, 13-gram index, embedding neighbours, AST match rate, tau pruning and
audit reports. Imports `curate` only.

Public names are imported lazily so importing the package stays fast.
"""

from curate.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_benchmark": "decontam.eval_sets",
    "BenchmarkItem": "decontam.eval_sets",
    "benchmark_checksum": "decontam.eval_sets",
    "AstMatchIndex": "decontam.ast_match",
    "ast_match_rate": "decontam.ast_match",
    "ast_sequence": "decontam.ast_match",
    "NgramIndex": "decontam.ngram",
    "embedding_neighbours": "decontam.embedding",
    "prune_shards": "decontam.prune",
    "decontam_audit": "decontam.report",
    "write_decontam_report": "decontam.report",
    "DecontamScorer": "decontam.score",
    "AuditShardReader": "decontam.score",
    "DecontamPrune": "decontam.reduce",
    "reduce_scores": "decontam.reduce",
}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS: dict[str, str] = {
    "decontam_prune": "decontam.reduce:DecontamPrune",
}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {
    "decontam_audit": "decontam.report:decontam_audit",
    "decontam_prune": "decontam.prune:prune_shards",
}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
