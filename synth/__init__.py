"""synth: diversity-constrained prompt generators and their taxonomies, generation steps, parsing and
validation of generations, diversity metrics. Imports `curate` only.

Public names are imported lazily so importing the package stays fast.
"""

from curate.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TextbookPromptGenerator": "synth.prompts",
    "ExercisePromptGenerator": "synth.prompts",
    "Prompt": "synth.prompts",
    "feistel_permute": "synth.prompts",
    "load_taxonomy": "synth.taxonomy",
    "topic_leaves": "synth.taxonomy",
    "parse_textbook": "synth.parse",
    "parse_exercise": "synth.parse",
    "split_blocks": "synth.parse",
    "stub_solution": "synth.parse",
    "ExerciseFilter": "synth.validate",
    "TextbookFilter": "synth.validate",
    "SynthDeduplicator": "synth.dedup",
    "ast_fingerprint": "synth.dedup",
    "generate_synth": "synth.generate",
    "SynthGenerator": "synth.stages",
    "dedup_shards": "synth.stages",
    "generate_textbooks": "synth.generate",
    "generate_exercises": "synth.generate",
    "write_dry_run": "synth.generate",
    "write_diversity_report": "synth.diversity",
    "diversity_metrics": "synth.diversity",
    "vendi_score": "synth.diversity",
}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS: dict[str, str] = {
    "synth_generate": "synth.stages:SynthGenerator",
    "synth_exercise_validate": "synth.validate:ExerciseFilter",
    "synth_textbook_validate": "synth.validate:TextbookFilter",
}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {
    "synth_textbooks": "synth.generate:generate_textbooks",
    "synth_exercises": "synth.generate:generate_exercises",
    "synth_dedup": "synth.stages:dedup_shards",
    "synth_diversity_report": "synth.diversity:write_diversity_report",
}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
