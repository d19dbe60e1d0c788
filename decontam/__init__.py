"""decontam: benchmark registry, 13-gram index, embedding neighbours, AST match rate, tau pruning and
audit reports. Imports `curate` only.

Public names are imported lazily so importing the package stays fast.
"""

from importlib import import_module

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_benchmark": "decontam.benchmarks",
    "BenchmarkItem": "decontam.benchmarks",
    "benchmark_checksum": "decontam.benchmarks",
    "AstMatchIndex": "decontam.ast_match",
    "ast_match_rate": "decontam.ast_match",
    "ast_sequence": "decontam.ast_match",
    "NgramIndex": "decontam.ngram",
    "embedding_neighbours": "decontam.embedding",
    "prune_shards": "decontam.prune",
    "decontam_audit": "decontam.report",
    "write_decontam_report": "decontam.report",
}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS: dict[str, str] = {}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {
    "decontam_audit": "decontam.report:decontam_audit",
    "decontam_prune": "decontam.prune:prune_shards",
}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'decontam' has no attribute {name!r}")
