"""Processes that behave like a core install (``pip install textbooks``, no optional extra).

:func:`core_install_env` writes a ``sitecustomize`` whose meta-path finder refuses the extras' modules
(torch, scikit-learn, ...), and returns an environment for ``subprocess`` in which importing one of
them raises ModuleNotFoundError, as it would where the extra is not installed.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCKED = (
    "torch", "transformers", "sentence_transformers", "sklearn", "joblib", "lightgbm", "openai", "tokenizers",
)  # fmt: skip
BLOCKED_MESSAGE = "is not part of the core install"

SITECUSTOMIZE = """
import sys

class _NoExtras:
    blocked = {blocked!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} ({message})", name=name)
        return None

sys.meta_path.insert(0, _NoExtras())
"""


def core_install_env(folder: Path, blocked: tuple[str, ...] = BLOCKED) -> dict[str, str]:
    """``os.environ`` plus a ``PYTHONPATH`` (``folder``, then the repository) that blocks ``blocked``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=blocked, message=BLOCKED_MESSAGE))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
