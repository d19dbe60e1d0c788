"""curate: documents, readers, writers, filters, labelers, embeddings, classifiers, dedup, the LLM
client and the code sandbox. The bottom layer: it imports datatrove and third-party packages only.

Public names are imported lazily (``from curate import ShardWriter`` loads only what it needs), so
``import curate`` stays fast and steps pickle for the executors.
"""

from importlib import import_module

# public name -> module that defines it
_EXPORTS = {
    "SHARD_SCHEMA": "curate.schema",
    "SCHEMA_VERSION": "curate.schema",
    "document_to_row": "curate.schema",
    "row_to_metadata": "curate.schema",
    "ShardWriter": "curate.shards",
    "ExclusionWriter": "curate.shards",
    "ShardReader": "curate.shards",
    "UnreadableLog": "curate.shards",
    "write_manifest": "curate.manifest",
    "read_manifest": "curate.manifest",
    "SentenceEmbedder": "curate.embed",
    "CausalLMEmbedder": "curate.embed",
    "EmbeddingStep": "curate.embed",
    "load_embeddings": "curate.embed",
    "DEFAULT_EMBEDDER": "curate.embed",
}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS = {
    "shards": "curate.shards:ShardReader",
    "shard_writer": "curate.shards:ShardWriter",
    "embed": "curate.embed:EmbeddingStep",
}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
