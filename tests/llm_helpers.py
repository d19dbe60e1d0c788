"""Helpers shared by the LLM tests (curate/llm, the labeler): real code snippets (the Python stdlib) and a deterministic responder."""

import hashlib
import sysconfig
from pathlib import Path

from datatrove.data import Document


def stdlib_snippets(n: int, lines_per_doc: int = 40) -> list[Document]:
    """``n`` documents cut from the installed Python stdlib (real code no one here wrote), stable ids."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[Document] = []
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for start in range(0, len(lines), lines_per_doc):
            text = "\n".join(lines[start : start + lines_per_doc]).strip()
            if len(text) < 80:
                continue
            docs.append(
                Document(text=text, id=f"{path.relative_to(root)}:{start}", metadata={"source": "stdlib"})
            )
            if len(docs) == n:
                return docs
    return docs


def rating_responder(body: dict) -> str:
    """Deterministic 'model': high if the snippet has a docstring or comments, else low; a few answers
    are deliberately unparseable, so that path is exercised too."""
    content = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    h = int(hashlib.sha256(content.encode()).hexdigest()[:8], 16)
    if h % 41 == 0:
        return "I am not able to judge this snippet."
    good = '"""' in content or content.count("#") >= 3
    return "High" if good else "low."
