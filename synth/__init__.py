"""synth: diversity-constrained prompt generators and their taxonomies, generation steps, parsing and
validation of generations, diversity metrics. Imports `curate` only.

Public names are imported lazily so importing the package stays fast.
"""

from importlib import import_module

# public name -> module that defines it
_EXPORTS: dict[str, str] = {}

# short step name usable in recipes (`uses: NAME`) -> "module:Class"
STEPS: dict[str, str] = {}

# short job name usable in recipes (a stage that runs a function, not a pipeline) -> "module:function"
JOBS: dict[str, str] = {}

__all__ = sorted(_EXPORTS) + ["STEPS", "JOBS"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'synth' has no attribute {name!r}")
